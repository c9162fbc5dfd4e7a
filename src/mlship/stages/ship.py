"""Shipping: build and push the serving image, load-test it (or a local server), deploy it."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlship import files, vcs
from mlship.card import MODEL_FILE, MlflowInfo, ModelCard, RegistryInfo
from mlship.choices import Environment, LoadTarget
from mlship.config.params import Params
from mlship.config.settings import Settings
from mlship.errors import CheckError, InputError, ServiceError, looks_unreachable
from mlship.gate.criteria import Criterion
from mlship.paths import PipelinePaths
from mlship.pipeline import artifacts
from mlship.pipeline.signatures import (
    PROVENANCE_FILE,
    SIGNATURE_FILE,
    TrustPolicy,
    Verified,
    check_directory,
)
from mlship.project import Project
from mlship.registry import loading, versions
from mlship.reports import deploy_report, gate_report
from mlship.ship import canary as canary_analysis
from mlship.ship import image, launch, loadtest, lockfile, rollout, supply_chain
from mlship.stages.pipeline import read_split

Progress = Callable[[str], None]
WHEEL_CACHE = Path.home() / ".cache" / "mlship" / "wheels"


def engine_for_build(settings: Settings, progress: Progress) -> Any:
    """The Docker engine with the base image on it; ServiceError when either is missing."""
    client = image.engine()
    image.ensure_base_image(client, settings.base_image, progress)
    return client


def image_build(
    client: Any,
    project: Project,
    model_dir: Path,
    dockerfile: Path,
    from_registry: str | None,
    progress: Progress,
) -> image.ImageRecord:
    """Build <registry>/<name>:<gitsha>-m<version> and :<gitsha> with OCI labels, the model
    in `model_dir` (or the registry's @from_registry) baked in."""
    settings, paths, dvc_file = project.settings, project.paths, project.dvc_file
    with tempfile.TemporaryDirectory(prefix="mlship-image-") as scratch:
        context = Path(scratch)
        signed: list[Path] = []
        if from_registry:  # checked against its signature as it is downloaded
            model_dir = context / "registry-model"
            card = stage_registry_model(settings, from_registry, model_dir)
            metrics = card.metrics or None
        else:
            card = ModelCard.load(model_dir)
            signed = [path for path in (paths.signature, paths.provenance) if path.is_file()]
            trust = TrustPolicy.of(settings)
            verified = check_directory(model_dir, trust, paths.signature, paths.provenance)
            if verified is not None:
                progress(f"the model's signature verifies (sha256 {verified.root[:16]}…)")
            artifacts.load_model(model_dir, card)  # refuse to bake a model that cannot load
            metrics = files.read_json(paths.metrics) if paths.metrics.is_file() else None
            card = with_registered_version(settings, card, progress)
        extra = lockfile.extra_requirements(card, Path(image.SERVE_LOCK), Path(image.FULL_LOCK))
        if extra:
            progress(f"the model needs beyond the server: {', '.join(p.name for p in extra)}")
        extra_lock = context / image.EXTRA_LOCK
        image.write_extra_lock(extra_lock, extra)
        locks = [Path(image.SERVE_LOCK), extra_lock]
        progress("downloading and hash-checking wheels ...")
        image.download_wheels(locks if extra else locks[:1], WHEEL_CACHE, Path.cwd())
        lock = dvc_file.with_suffix(".lock")
        plan = image.plan(
            settings.registry,
            settings.image_repository,
            settings.registered_name,
            vcs.git_state().sha,
            card,
            files.sha256(lock) if lock.is_file() else "",
            vcs.remote_url(),
            artifacts.utc_now(),
            settings.base_image,
            image.system_packages(extra, WHEEL_CACHE),
        )
        build_context = context / "context"
        build_context.mkdir()
        image.stage_context(
            build_context, dockerfile, locks, model_dir, WHEEL_CACHE, card, metrics, signed
        )
        image_id = image.build(client, build_context, plan, progress)
    record = image.ImageRecord(
        id=image_id,
        references=plan.references,
        labels=plan.build_args,
        size_bytes=int(client.images.get(image_id).attrs.get("Size", 0)),
    )
    record.save(paths.image_json)
    return record


def stage_registry_model(settings: Settings, alias: str, folder: Path) -> ModelCard:
    """The registry's @alias version as a model directory; returns its card."""
    return stage_registry_uri(settings, f"models:/{settings.registered_name}@{alias}", folder)


def stage_registry_uri(settings: Settings, uri: str, folder: Path) -> ModelCard:
    """The version a models:/ URI points at as a model directory; returns its card."""
    name, alias, _ = loading.parse_models_uri(uri)
    version = loading.resolve_version(settings.tracking_uri, uri)
    # the version's own files, checked against its signature, copied (never saved anew: a
    # signature holds for the bytes it was made over)
    loaded = loading.load_version(
        settings.tracking_uri, name, version, trust=TrustPolicy.of(settings), keep=folder
    )
    mlflow = (loaded.card.mlflow or MlflowInfo(run_id=loaded.run_id)).model_copy(
        update={"run_id": loaded.run_id, "tracking_uri": settings.tracking_uri}
    )
    card = loaded.card.updated(
        registry=RegistryInfo(name=name, version=version, alias=alias),
        mlflow=mlflow,
        metrics=loaded.metrics,
    )
    card.save(folder)  # the fields a hop fills in are not signed
    return card


def with_registered_version(settings: Settings, card: ModelCard, progress: Progress) -> ModelCard:
    """The card with the registry version `mlship register` gave this model's run, so the
    image tag, its labels and the server's /model name that version."""
    version = versions.registered_version(settings, card.run_id) if card.run_id else None
    if version is None:
        progress("this model is not registered (`mlship register`): tagged as local")
        return card
    return card.updated(registry=RegistryInfo(name=settings.registered_name, version=version))


def image_push(settings: Settings, paths: PipelinePaths, progress: Progress) -> image.ImageRecord:
    """Push the image recorded by `mlship image build`; make the SBOM of what the registry
    now holds and push it beside the image; with the scan on, gate on trivy's findings.
    The image record and the model's registry version (when it has one) keep the digest,
    the SBOM's sha256 and the findings' count, also when the gate fails."""
    built = image.ImageRecord.load(paths.image_json)
    digest = image.push(image.engine(), built.references, progress)
    pinned = f"{built.repository}@{digest}"
    progress(f"SBOM of {pinned} -> {paths.sbom}")
    sbom_sha256 = supply_chain.make_sbom(pinned, paths.sbom)
    attached = supply_chain.attach_sbom(built.repository, digest, paths.sbom)
    signature_reference = attach_signature(built.repository, digest, progress)
    findings = None
    if settings.scan_vulnerabilities:
        progress(f"vulnerabilities at {settings.scan_severity} -> {paths.vulnerabilities}")
        findings = supply_chain.scan_vulnerabilities(
            paths.sbom, settings.scan_severity, paths.vulnerabilities
        )
    pushed = built.model_copy(
        update={
            "pushed": True,
            "digest": digest,
            "sbom_sha256": sbom_sha256,
            "sbom_reference": attached,
            "signature_reference": signature_reference,
            "vulnerabilities": None if findings is None else len(findings),
        }
    )
    pushed.save(paths.image_json)
    version = built.labels.get("MODEL_VERSION", "local")
    if version != "local":  # the registered model the image was built from, by its label
        settings = settings.model_copy(update={"model_name": built.labels["MODEL_NAME"]})
        tags = {"mlship.ship.image": pinned, "mlship.sbom_sha256": sbom_sha256}
        if findings is not None:
            tags["mlship.vulnerabilities"] = str(len(findings))
        versions.tag_version(settings, version, tags)
    if findings:
        listed = "; ".join(
            f"{f.id} ({f.severity}) in {f.package} {f.installed}, fixed in {f.fixed}"
            for f in findings[:10]
        )
        raise CheckError(
            f"{len(findings)} fixable {settings.scan_severity} vulnerabilities in "
            f"{pinned}: {listed}; all of them in {paths.vulnerabilities}"
        )
    return pushed


def attach_signature(repository: str, digest: str, progress: Progress) -> str | None:
    """The signature and provenance the pushed image carries in /opt/model, pushed beside
    it for admission controllers; None when its model is not signed."""
    pinned = f"{repository}@{digest}"
    with tempfile.TemporaryDirectory(prefix="mlship-image-model-") as scratch:
        folder = supply_chain.model_in_image(pinned, Path(scratch))
        signature, provenance = folder / SIGNATURE_FILE, folder / PROVENANCE_FILE
        if not (signature.is_file() and provenance.is_file()):
            return None
        progress(f"the model's signature and provenance beside {pinned}")
        return supply_chain.attach_signature(repository, digest, signature, provenance)


def verify_image(settings: Settings, image_ref: str, required: bool) -> Verified | str | None:
    """The image's model (its /opt/model, read through the registry API) against its
    signature and provenance under the policy — the check an admission controller would
    make, made by the deployer; `required` for production whatever the policy says.
    InputError when it does not hold: nothing is deployed. Under the `checked` policy an
    image the deployer cannot read is left to the cluster (which says why: the reason is
    returned)."""
    trust = TrustPolicy.of(settings, at_least="required" if required else None)
    if trust.mode == "off":
        return None
    with tempfile.TemporaryDirectory(prefix="mlship-image-model-") as scratch:
        try:
            folder = supply_chain.model_in_image(image_ref, Path(scratch))
        except ServiceError as error:
            if trust.mode == "required":
                raise InputError(f"refusing to deploy {image_ref}: {error}") from error
            return f"not checked: {error}"
        try:
            return check_directory(folder, trust)
        except InputError as error:
            said = str(error).replace(str(folder), f"{image_ref}:/opt/model")
            raise InputError(f"refusing to deploy {image_ref}: {said}") from error


@dataclass(frozen=True)
class Verification:
    """What `mlship verify` found."""

    what: str  # the folder, models:/ URI or image checked
    verified: Verified | None  # None: not signed (and the policy let it through)


def verify(settings: Settings, paths: PipelinePaths | None, target: str) -> Verification:
    """A model directory (its signature beside it, or with the pipeline's reports for the
    pipeline's own `models/` when run in a project), a models:/ URI, or an image, checked
    against the policy (at least `checked`). InputError saying what does not hold."""
    trust = TrustPolicy.of(settings, at_least="checked")
    if target.startswith(loading.MODELS_SCHEME):
        name, _, _ = loading.parse_models_uri(target)
        version = loading.resolve_version(settings.tracking_uri, target)
        with tempfile.TemporaryDirectory(prefix="mlship-verify-") as scratch:
            loading.load_version(
                settings.tracking_uri, name, version, trust=trust, keep=Path(scratch)
            )
            return Verification(target, check_directory(Path(scratch), trust))
    folder = Path(target)
    if folder.is_dir():
        pipelines_own = paths is not None and folder.resolve() == paths.model_dir.resolve()
        if pipelines_own and paths is not None and not (folder / SIGNATURE_FILE).is_file():
            return Verification(
                target, check_directory(folder, trust, paths.signature, paths.provenance)
            )
        return Verification(target, check_directory(folder, trust))
    if "/" not in target or (":" not in target.rsplit("/", 1)[-1] and "@" not in target):
        raise InputError(f"{target}: no such folder, models:/ URI or image reference")
    found = verify_image(settings, target, required=settings.signatures == "required")
    if isinstance(found, str):
        raise ServiceError(f"{target}: {found}")
    return Verification(target, found)


# --- the load test ----------------------------------------------------------------------


@dataclass(frozen=True)
class LoadtestResult:
    target: str  # what was load-tested, for people
    summary: dict[str, float]
    criteria: list[Criterion]
    fallback: str | None  # why auto did not test the image

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.criteria)


def run_loadtest(
    params: Params,
    settings: Settings,
    paths: PipelinePaths,
    model_dir: Path,
    url: str | None = None,
    target: LoadTarget = LoadTarget.auto,
) -> LoadtestResult:
    """Locust for a bounded time against `url`, the built image (its server under the
    settings' signature policy), or a local server; the budget in params.yaml decides;
    reports are written whatever the verdict."""
    fallback = None
    with contextlib.ExitStack() as cleanup:
        described = url or ""
        if url is None and target in (LoadTarget.auto, LoadTarget.image):
            try:
                client, reference = image_to_load_test(paths.image_json, model_dir)
            except (InputError, ServiceError) as reason:
                if target is LoadTarget.image:
                    raise InputError(f"cannot load-test the image: {reason}") from reason
                fallback = str(reason)
            else:
                url = cleanup.enter_context(
                    launch.running_image(client, reference, settings.trust_environment())
                )
                described = f"image {reference}"
        if url is None:
            url = cleanup.enter_context(launch.local_server(model_dir))
            described = f"local server ({model_dir})"
        card = ModelCard.load(model_dir)
        scratch = Path(cleanup.enter_context(tempfile.TemporaryDirectory()))
        rows_file = scratch / "rows.json"
        rows = loadtest.request_rows(read_split(paths.test), card.features.columns)
        rows_file.write_text(json.dumps(rows))
        paths.loadtest_html.parent.mkdir(parents=True, exist_ok=True)
        stats = loadtest.run_locust(url, rows_file, params.loadtest, scratch, paths.loadtest_html)
        summary = loadtest.aggregate(stats)
    criteria = loadtest.budget_criteria(summary, params.loadtest)
    files.write_json(
        paths.loadtest_json,
        {
            "passed": all(c.passed for c in criteria),
            "model_sha256": files.sha256(model_dir / MODEL_FILE),  # the model load-tested
            "target": described,
            "summary": summary,
            "budget": params.loadtest.model_dump(),
            "criteria": [c.__dict__ for c in criteria],
        },
    )
    files.write_text(paths.loadtest_md, loadtest.markdown(summary, criteria, described))
    files.write_with(
        paths.loadtest_junit,
        lambda temp: gate_report.gate_junit(criteria, temp, "mlship.ship.loadtest"),
    )
    return LoadtestResult(described, summary, criteria, fallback)


def _model_in(paths: PipelinePaths, image_ref: str, card: ModelCard) -> str | None:
    """The digest of the model directory's model when `image_ref` is the image built from it
    (reports/image.json), else None: a deploy of another image describes another model."""
    if not paths.image_json.is_file():
        return None
    built = image.ImageRecord.load(paths.image_json)
    if image_ref not in built.references or built.run_id != (card.run_id or ""):
        return None
    return files.sha256(paths.model_dir / MODEL_FILE)


def image_to_load_test(image_json: Path, model_dir: Path) -> tuple[Any, str]:
    """The Docker engine and the built image of this model; InputError says why not."""
    if not image_json.is_file():
        raise InputError(f"no image built ({image_json} is missing)")
    built = image.ImageRecord.load(image_json)
    if built.run_id != (ModelCard.load(model_dir).run_id or ""):
        raise InputError(f"the image in {image_json} holds another model than {model_dir}")
    client = image.engine()
    try:
        client.images.get(built.reference)
    except Exception as error:  # the docker SDK raises its own kinds for a missing image
        raise InputError(f"{built.reference} is not in the local Docker engine") from error
    return client, built.reference


# --- deploy -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CanaryOptions:
    prometheus_url: str
    settle_seconds: float
    load_url: str | None = None  # drive the canary with the load test through this URL


def deploy(
    project: Project,
    env: Environment,
    image_ref: str | None,
    *,
    timeout: int,
    namespace: str | None = None,
    canary: CanaryOptions | None = None,
) -> rollout.DeployReport:
    """Roll the image out (or step a canary); write the report; record a success on the
    registered model version. CheckError when it failed, saying whether it was undone."""
    params, settings, paths = project.params, project.settings, project.paths
    if image_ref is None:
        built = image.ImageRecord.load(paths.image_json)
        if not built.pushed:
            raise InputError(
                f"{paths.image_json}: the image was not pushed; run `mlship image push`"
            )
        image_ref = built.reference
    version = rollout.expected_version(image_ref)
    if version is None:
        raise InputError(
            f"{image_ref}: expected a tag <gitsha>-m<version> from `mlship image build`"
        )
    verified = verify_image(settings, image_ref, required=env is Environment.production)
    card = ModelCard.load(paths.model_dir)
    row = loadtest.request_rows(read_split(paths.test), card.features.columns, limit=1)[0]
    target = rollout.Target(namespace or f"mlship-{env.value}")
    kubectl = rollout.Kubectl(target.namespace, timeout=settings.kubectl_timeout_seconds)
    if canary is not None:
        criteria = params.canary

        def analyse() -> canary_analysis.Verdict:
            return canary_analysis.from_prometheus(
                canary.prometheus_url,
                target.namespace,
                target.deployment,
                criteria,
                canary.settle_seconds,
            ).run()

        with contextlib.ExitStack() as load:
            if canary.load_url is not None:
                rows = loadtest.request_rows(read_split(paths.test), card.features.columns)
                steps = len(rollout.CANARY_STEPS)
                longest = 3 * timeout + steps * (criteria.max_wait_seconds + 60)
                load.enter_context(
                    loadtest.background_load(canary.load_url, rows, params.loadtest, longest)
                )
            report = rollout.canary_deploy(
                kubectl, target, env.value, image_ref, version, row, analyse, timeout
            )
    else:
        report = rollout.deploy(kubectl, target, env.value, image_ref, version, row, timeout)
    if isinstance(verified, str):
        checked = verified
    elif verified is None:
        checked = "the model is not signed (the policy lets it through)"
    else:
        checked = f"signed model sha256 {verified.root[:16]}…" + (
            ", provenance of a passed gate" if verified.provenance is not None else ""
        )
    report.steps.insert(0, rollout.Step("verify model", True, checked))
    out = paths.deploy_report(env.value)
    files.write_json(out, report.as_json() | {"model_sha256": _model_in(paths, image_ref, card)})
    files.write_text(out.with_suffix(".md"), report.markdown())
    files.write_text(out.with_suffix(".html"), deploy_report.deploy_html(report))
    deploy_report.deploy_junit(report, paths.gate_junit.parent / f"deploy-{env.value}.xml")
    if not report.ok:
        failed = "; ".join(f"{s.name}: {s.detail}" for s in report.steps if not s.ok)
        if report.previous_image is None:  # it could not even read what runs
            if looks_unreachable(Exception(failed)):
                raise ServiceError(
                    f"deploy to {env.value}: the cluster did not answer "
                    f"(nothing was changed): {failed}"
                )
            raise CheckError(f"deploy to {env.value} failed (nothing was changed): {failed}")
        outcome = (
            f"rolled back: verified on {report.previous_image}"
            if report.rolled_back
            else f"NOT verified back on {report.previous_image}: act now"
        )
        raise CheckError(f"deploy to {env.value} failed ({outcome}): {failed}")
    if version != "local":
        versions.tag_version(
            settings,
            version,
            {
                f"mlship.deployed.{env.value}": image_ref,
                f"mlship.deployed.{env.value}.at": artifacts.utc_now(),
            },
        )
    return report
