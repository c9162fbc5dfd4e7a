"""Release: register a gated model as @candidate; promote it to @champion (recording who
approved, through which CI); roll @champion back to the version it replaced."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlship import files
from mlship.card import MODEL_FILE, ModelCard
from mlship.config.settings import Settings
from mlship.errors import CheckError, InputError
from mlship.paths import PipelinePaths
from mlship.pipeline import artifacts, signatures
from mlship.project import Project
from mlship.registry import runs, versions
from mlship.registry.loading import SIGNATURE_FOLDER
from mlship.ship.ci import cloudbuild
from mlship.ship.ci.approval import Approval, approval

GATE_PASSED = "passed"


def require_gate_pass(
    settings: Settings, paths: PipelinePaths, dvc_file: Path
) -> tuple[dict[str, Any], ModelCard]:
    """The gate report and the model card, once the report is a fresh pass of this model,
    byte for byte the one the gate recorded on the run."""
    report = files.read_json(paths.gate_json)
    card = ModelCard.load(paths.model_dir)
    if report.get("candidate_run_id") != card.run_id:
        raise InputError(
            f"{paths.gate_json} judged run {report.get('candidate_run_id')}, but the model "
            f"in {paths.model_dir} is run {card.run_id}; run `mlship gate` again"
        )
    if report.get("dvc_lock_sha256") != files.sha256(dvc_file.with_suffix(".lock")):
        raise InputError(f"{paths.gate_json} is stale: dvc.lock changed since the gate ran")
    if report.get("passed") is not True:
        raise CheckError(
            f"the gate did not pass ({', '.join(report.get('failed', []))}); not registering"
        )
    run_id = card.require_run_id(paths.model_dir)
    if (
        runs.passing_gate_report(settings.tracking_uri, run_id, files.sha256(paths.gate_json))
        is None
    ):
        raise CheckError(
            f"{paths.gate_json} is not the passing report the gate recorded on run {run_id} "
            "(edited, or from another gate run); run `mlship gate` again"
        )
    return report, card


@dataclass(frozen=True)
class Registered:
    version: str
    signed: str | None  # the signed model's digest, when a signing key was set


def register(project: Project) -> Registered:
    """Register the gated model's run once, tag it with its provenance, alias `candidate`;
    with a signing key, sign the model and its provenance first (files beside the reports,
    and on the run). Returns the version."""
    settings, paths, dvc_file = project.settings, project.paths, project.dvc_file
    report, card = require_gate_pass(settings, paths, dvc_file)
    run_id = card.require_run_id(paths.model_dir)
    gate_digest = files.sha256(paths.gate_json)
    ingest = files.read_json(paths.ingest_report)
    model_uri = card.mlflow.model_uri if card.mlflow else None
    if not model_uri:
        raise InputError(f"{paths.model_dir}: the model card has no MLflow model URI")
    signed = sign(project, card, report, gate_digest)
    version = versions.register(
        settings,
        run_id,
        model_uri,
        {
            "mlship.git_sha": card.git.sha,
            "mlship.dvc_lock_sha256": report["dvc_lock_sha256"],
            "mlship.model_sha256": report["model_sha256"],
            "mlship.data_train_digest": ingest["digest"]["train"],
            "mlship.data_test_digest": ingest["digest"]["test"],
            "mlship.gate": GATE_PASSED,
            runs.GATE_DIGEST_TAG: gate_digest,
            "mlship.reports.gate_report": f"runs:/{run_id}/{runs.gate_folder(gate_digest)}/gate.md",
            "mlship.gate_champion": str(report.get("champion_version") or "none"),
            **({} if signed is None else signed.tags()),
        },
    )
    return Registered(version, None if signed is None else signed.root)


@dataclass(frozen=True)
class Signed:
    root: str  # the signed manifest's digest
    key: str  # the signing key's sha256 (the bundle's hint)

    def tags(self) -> dict[str, str]:
        return {"mlship.signed_model_sha256": self.root, "mlship.signing_key_sha256": self.key}


def sign(
    project: Project, card: ModelCard, report: dict[str, Any], gate_digest: str
) -> Signed | None:
    """The model directory signed, and its provenance beside it, with MLSHIP_SIGNING_KEY:
    written to paths.signature and paths.provenance and kept on the run (signature/). None
    without a key; an error when the policy requires signatures and there is no key."""
    settings, paths = project.settings, project.paths
    for stale in (paths.signature, paths.provenance):  # never an earlier model's
        stale.unlink(missing_ok=True)
    if settings.signing_key is None:
        if settings.signatures == "required":
            raise InputError(
                "MLSHIP_SIGNATURES=required, but no MLSHIP_SIGNING_KEY to sign the model with"
            )
        return None
    model_file = paths.model_dir / MODEL_FILE
    if files.sha256(model_file) != report.get("model_sha256"):
        raise InputError(f"{model_file} is not the file the gate judged; run `mlship gate` again")
    pem = settings.signing_key_pem
    assert pem is not None
    key = signatures.load_private_key(*pem)
    model = signatures.directory_files(paths.model_dir)
    statement = signatures.model_statement(model.digests())
    root = statement["subject"][0]["digest"]["sha256"]
    predicate = provenance(project, card, report, gate_digest)
    files.write_bytes(paths.signature, signatures.sign_statement(statement, key))
    files.write_bytes(
        paths.provenance,
        signatures.sign_statement(signatures.provenance_statement(root, predicate), key),
    )
    run_id = card.require_run_id(paths.model_dir)
    runs.log_artifacts(settings, run_id, [paths.signature, paths.provenance], SIGNATURE_FOLDER)
    return Signed(root, signatures.key_hint(key.public_key()))


def provenance(
    project: Project, card: ModelCard, report: dict[str, Any], gate_digest: str
) -> dict[str, Any]:
    """The SLSA provenance (v1) predicate of a registered model: what it was built from
    (the data's DVC digests, the commit, the params, the trainer's lock) and the gate's
    verdict on it."""
    paths, dvc_file = project.paths, project.dvc_file
    outputs = dvc_outputs(dvc_file.with_suffix(".lock"))
    root = dvc_file.parent
    splits = [str(path.relative_to(root)) for path in (paths.train, paths.test)]
    data = [
        {"uri": f"dvc:{path}", "digest": {"md5": outputs[path]}}
        for path in splits
        if path in outputs
    ]
    lock = Path("requirements.lock")
    environment = (
        [{"uri": "requirements.lock", "digest": {"sha256": files.sha256(lock)}}]
        if lock.is_file()
        else []
    )
    return {
        "buildDefinition": {
            "buildType": signatures.BUILD_TYPE,
            "externalParameters": {
                "name": project.settings.registered_name,
                "params_sha256": files.sha256(project.params_file),
                "git": {"sha": card.git.sha, "dirty": card.git.dirty},
            },
            "internalParameters": {
                "gate": {
                    "verdict": GATE_PASSED,
                    "report_sha256": gate_digest,
                    "criteria": len(report.get("criteria", [])),
                    "champion_version": report.get("champion_version"),
                },
                "dvc_lock_sha256": report.get("dvc_lock_sha256"),
            },
            "resolvedDependencies": data + environment,
        },
        "runDetails": {
            "builder": {"id": os.environ.get("MLSHIP_BUILDER_ID", "mlship register")},
            "metadata": {
                "invocationId": card.run_id,
                "startedOn": artifacts.utc_now(),
            },
        },
    }


def dvc_outputs(lock: Path) -> dict[str, str]:
    """path -> md5 of every stage output dvc.lock records."""
    import yaml

    try:
        document = yaml.safe_load(lock.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise InputError(f"{lock}: cannot read it: {error}") from error
    return {
        out["path"]: out["md5"]
        for stage in (document.get("stages") or {}).values()
        for out in stage.get("outs", [])
        if "md5" in out
    }


def require_gate_record(settings: Settings, version: str) -> None:
    """A version is promoted only when its run carries the passing gate report the version
    was registered with, stored and tagged by the gate itself: a tag alone is not enough."""
    if versions.gated_report(settings, version) is None:
        raise CheckError(f"version {version} has no passing gate record on its run; not promoting")


@dataclass(frozen=True)
class Promotion:
    version: str  # now @champion
    previous: str | None  # what was @champion before
    approval: Approval


def promote(
    settings: Settings,
    env: Mapping[str, str],
    version: str | None = None,
    approver: str | None = None,
) -> Promotion:
    """Move @champion to `version` (default @candidate), which must have passed the gate."""
    who = approval(env, settings, approver, artifacts.utc_now())
    current = versions.alias_version(settings, versions.CHAMPION)
    if version is None:
        candidate = versions.alias_version(settings, versions.CANDIDATE)
        if candidate is None:
            raise InputError(f"{settings.registered_name} has no @candidate; run `mlship register`")
        version = str(candidate.version)
    require_gate_record(settings, version)
    previous = None if current is None else str(current.version)
    if previous == version:
        raise InputError(f"version {version} is already @champion")
    versions.move_champion(
        settings, version, {**who.tags(), "mlship.previous_champion": previous or "none"}
    )
    return Promotion(version, previous, who)


def rollback(settings: Settings, env: Mapping[str, str], approver: str | None = None) -> Promotion:
    """Move @champion back to the version it replaced, recording who did it."""
    who = approval(env, settings, approver, artifacts.utc_now())
    current = versions.alias_version(settings, versions.CHAMPION)
    if current is None:
        raise InputError(f"{settings.registered_name} has no @champion to roll back")
    target = versions.version_tags(settings, str(current.version)).get(
        "mlship.previous_champion", "none"
    )
    if target == "none":
        raise InputError(f"version {current.version} records no previous champion to roll back to")
    versions.move_champion(
        settings,
        target,
        {
            **who.tags("mlship.rolled_back"),
            "mlship.rolled_back_from": str(current.version),
        },
    )
    return Promotion(target, str(current.version), who)


# --- Cloud Build: the promotion's approval where the delivery runs on Cloud Build ---------


@dataclass(frozen=True)
class StartedBuild:
    id: str
    waiting_for_approval: bool
    url: str


@dataclass(frozen=True)
class PendingBuild:
    id: str
    trigger: str
    release_sha: str


def cloudbuild_submit(
    settings: Settings, trigger: str, branch: str | None, sha: str | None, substitution: list[str]
) -> StartedBuild:
    """Run a build trigger (one with approvalConfig starts a build that waits)."""
    substitutions = cloudbuild.parse_substitutions(substitution)
    api, where = cloudbuild.connect(settings)
    build = cloudbuild.run_trigger(
        api, where, trigger, branch=branch, sha=sha, substitutions=substitutions
    )
    waiting = build.approval.state.name == "PENDING"
    return StartedBuild(str(build.id), waiting, where.console_url(build.id))


def cloudbuild_pending(settings: Settings) -> list[PendingBuild]:
    """The builds waiting for approval."""
    api, where = cloudbuild.connect(settings)
    return [
        PendingBuild(
            str(build.id),
            str(build.substitutions.get("TRIGGER_NAME", build.build_trigger_id)),
            str(build.substitutions.get("_RELEASE_SHA", "")),
        )
        for build in cloudbuild.awaiting_approval(api, where)
    ]


def cloudbuild_decide(settings: Settings, build_id: str, approve: bool, comment: str) -> None:
    """Approve or reject a build waiting for approval, with a comment."""
    api, where = cloudbuild.connect(settings)
    cloudbuild.decide(api, where, build_id, approve=approve, comment=comment)
