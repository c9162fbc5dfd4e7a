"""The gate stage: judge the candidate and write its reports.

It trusts no file it could recompute: the model is scored on the test split here, and the
metrics it judges are those scores (metrics/evaluate.json must match them, or the gate
refuses); latency is measured again; the data contract is checked again on the splits.
Then the thresholds, behaviour on the test split, a paired comparison with the registry's
@champion on the same rows, and the contract's verdict.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from mlship import files
from mlship.card import MODEL_FILE, ModelCard
from mlship.config.params import BehaviourParams, Params
from mlship.config.settings import Settings
from mlship.errors import InputError
from mlship.gate import attacks
from mlship.gate.criteria import (
    Answer,
    Criterion,
    attack_criteria,
    baseline_criterion,
    behaviour_criteria,
    champion_criteria,
    contract_criterion,
    provenance_criterion,
    threshold_criteria,
)
from mlship.paths import PipelinePaths
from mlship.pipeline import artifacts, contract, data
from mlship.pipeline.dvc_repo import stale_stages
from mlship.pipeline.evaluate import Evaluation, evaluate_model, measure_latency
from mlship.pipeline.features import feature_frame
from mlship.project import Project
from mlship.registry import runs, versions
from mlship.reports import gate_report
from mlship.stages.pipeline import ingest_splits, read_split

StaleStages = Callable[[Path], list[str]]


@dataclass(frozen=True)
class GateResult:
    criteria: list[Criterion]
    champion_version: str | None
    report: Path  # the Markdown report

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.criteria)

    @property
    def failed(self) -> list[Criterion]:
        return [c for c in self.criteria if not c.passed]


def gate(project: Project, stale: StaleStages = stale_stages) -> GateResult:
    """Judge the candidate in the project's model directory; InputError on missing, NaN,
    stale or edited inputs — and then the reports say the gate refused, so no earlier
    verdict is left to be read as this model's."""
    try:
        return _judge(project, stale)
    except InputError as error:
        write_refusal(project.paths, str(error))
        raise


def _judge(project: Project, stale: StaleStages) -> GateResult:
    params, settings, paths = project.params, project.settings, project.paths
    dvc_file = project.dvc_file
    outdated = stale(dvc_file)
    if outdated:
        raise InputError(
            "the evaluation is stale: these stages differ from dvc.lock: "
            + ", ".join(outdated)
            + "; run `dvc repro` first"
        )
    card = ModelCard.load(paths.model_dir)
    run_id = card.require_run_id(paths.model_dir)
    model = artifacts.load_model(paths.model_dir, card)
    test = data.select_columns(read_split(paths.test), params.data, str(paths.test))
    scored = evaluate_model(model, test, params.data, card.baseline)
    metrics = recorded_metrics_match(paths.metrics, scored)
    latency = measure_latency(model, test, params.data)
    task = params.data.task
    criteria = threshold_criteria(metrics, latency, params.gate, task)
    unmeasured: list[str] = []
    answers = scored.predictions
    if card.baseline is None:
        unmeasured.append("the trivial baseline: the model card predates it (retrain)")
    else:
        criteria.append(
            baseline_criterion(
                answers["actual"].to_numpy(),
                answers["predicted"].to_numpy(),
                card.baseline,
                list(card.classes),
                params.gate,
                task,
            )
        )
    if params.gate.behaviour is not None:
        criteria += behaviour(model, test, params, params.gate.behaviour)
    champion = versions.alias_version(settings, versions.CHAMPION)
    champion_version = None if champion is None else str(champion.version)
    paths.champion_predictions.unlink(missing_ok=True)  # never a stale champion's answers
    rival: Rival | None = None
    test_set = describe_test_set(test, params)
    champion_test_set: dict[str, Any] | None = None
    if champion_version is not None:
        rival = score_champion(settings, champion_version, test, params)
        criteria += champion_criteria(
            answers["actual"].to_numpy(),
            answers["predicted"].to_numpy(),
            rival.scored.predictions["predicted"].to_numpy(),
            list(card.classes),
            params.gate,
            champion_version,
            task,
        )
        champion_answers = rival.scored.predictions
        files.write_with(
            paths.champion_predictions, lambda temp: champion_answers.to_csv(temp, index=False)
        )
        gated = versions.gated_report(settings, champion_version) or {}
        champion_test_set = gated.get("test_set")
        if champion_test_set and champion_test_set.get("digest") != test_set["digest"]:
            criteria += on_the_champions_test_set(
                settings, model, card, rival, champion_test_set, latency, params, unmeasured
            )
    criteria.append(contract_criterion(recheck_contract(params, paths)))
    criteria.append(provenance_criterion(replaced_splits(params, paths), params.data.source))
    criteria += attack(model, test, params, paths, unmeasured)

    current = params.model_dump(mode="json", by_alias=True)
    context = {
        "task": task,
        "candidate_run_id": run_id,
        "git_sha": card.git.sha,
        "git_dirty": card.git.dirty,
        "model_name": settings.registered_name,
        "estimator": card.estimator,
        "champion_version": champion_version,
        # the champion's metrics on these same test rows, beside the candidate's
        "champion_metrics": None if rival is None else rival.scored.metrics,
        # what the model was judged on, and what the champion was (shown when they differ)
        "test_set": test_set,
        "champion_test_set": champion_test_set,
        "dvc_lock_sha256": files.sha256(dvc_file.with_suffix(".lock")),
        "model_sha256": files.sha256(paths.model_dir / MODEL_FILE),
        "trusted_types": list(card.trusted_types),
        # what serving checks before it imports the team's code shipped with the version
        "code_sha256": artifacts.code_digest(paths.model_dir),
        "not_measured": unmeasured,
        "judged_at": artifacts.utc_now(),
    }
    diff = None if rival is None else gate_report.params_diff(rival.card.params, current)
    files.write_json(paths.gate_json, gate_report.gate_json(criteria, context))
    files.write_text(paths.gate_md, gate_report.gate_markdown(criteria, metrics, diff, context))
    files.write_with(paths.gate_junit, lambda temp: gate_report.gate_junit(criteria, temp))
    # the verdict is recorded on the run: `register` and `promote` trust that, not a file
    passed = all(c.passed for c in criteria)
    runs.record_gate(settings, run_id, paths.gate_json, [paths.gate_md, paths.gate_junit], passed)
    if passed:  # a later candidate on another test set is judged on this one too
        runs.keep_test_split(settings, run_id, paths.test, test_set["digest"])
    return GateResult(criteria, champion_version, paths.gate_md)


def write_refusal(paths: PipelinePaths, reason: str) -> None:
    """The gate's reports when it refused to judge: a refused verdict for the model on disk
    (by digest, when there is one), in place of whatever an earlier run left."""
    model_file = paths.model_dir / MODEL_FILE
    refusal = Criterion("refused", "the gate could judge the model", False, reason)
    context = {
        "refused": reason,
        "model_sha256": files.sha256(model_file) if model_file.is_file() else None,
        "judged_at": artifacts.utc_now(),
    }
    files.write_json(paths.gate_json, gate_report.gate_json([refusal], context))
    files.write_text(paths.gate_md, gate_report.refusal_markdown(reason))
    files.write_with(paths.gate_junit, lambda temp: gate_report.gate_junit([refusal], temp))


def attack(
    model: Any, test: pd.DataFrame, params: Params, paths: PipelinePaths, unmeasured: list[str]
) -> list[Criterion]:
    """Membership inference and evasion on the candidate (gate/attacks.py); what cannot be
    measured for this model is added to `unmeasured`, to be said in the report."""
    settings = params.gate.attacks
    train = data.select_columns(read_split(paths.train), params.data, str(paths.train))
    found_membership = attacks.membership(
        model, train, test, params.data, settings.membership, settings.seed
    )
    found_evasion = None
    if settings.evasion is not None:
        found_evasion = attacks.evasion(
            model, train, test, params.data, settings.evasion, settings.seed
        )
        if found_evasion is None:
            unmeasured.append(
                "evasion: HopSkipJump needs labels to flip (regression)"
                if params.data.task == "regression"
                else "evasion: no numeric or text column to change"
            )
    if settings.evasion is None:
        unmeasured.append("evasion: turned off in params.yaml (gate.attacks.evasion: null)")
    return attack_criteria(found_membership, found_evasion, settings)


def recorded_metrics_match(recorded: Path, scored: Evaluation) -> dict[str, Any]:
    """The metrics as recomputed; InputError when the recorded file says otherwise."""
    on_file = files.read_json(recorded)
    recomputed = json.loads(json.dumps(scored.metrics))  # the file's own JSON types
    differing = sorted(
        key for key in recomputed.keys() | on_file.keys() if on_file.get(key) != recomputed.get(key)
    )
    if differing:
        key = differing[0]
        raise InputError(
            f"{recorded} does not match the model's own scores on the test split ({key}: "
            f"{on_file.get(key)!r} on file, {recomputed.get(key)!r} recomputed): it was edited "
            "or is stale; run `dvc repro`"
        )
    return dict(recomputed)


def recheck_contract(params: Params, paths: PipelinePaths) -> dict[str, Any]:
    checks = contract.check_contract(
        read_split(paths.train), read_split(paths.test), params.data, params.validate_
    )
    return contract.contract_report(checks)


def replaced_splits(params: Params, paths: PipelinePaths) -> list[str]:
    """The splits on disk that differ from ingest's own derivation from the declared sources
    and seed: recomputed here, since dvc.lock and ingest.json can be rewritten with them."""
    derived = ingest_splits(params)
    return [
        name
        for name, on_disk, fresh in (
            ("train", paths.train, derived.train),
            ("test", paths.test, derived.test),
        )
        if data.frame_digest(read_split(on_disk)) != data.frame_digest(as_stored(fresh))
    ]


def as_stored(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as a split file reads back (parquet keeps dtypes its own way)."""
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    buffer.seek(0)
    return pd.read_parquet(buffer)


@dataclass(frozen=True)
class Rival:
    """The champion, scored on the candidate's test rows."""

    version: str
    run_id: str
    model: Any
    card: ModelCard
    scored: Evaluation


def score_champion(settings: Settings, version: str, test: pd.DataFrame, params: Params) -> Rival:
    """The champion's card, and its answers and metrics on this test split (the run report's
    curves read its class probabilities)."""
    loaded = versions.load_champion(settings, version)
    try:
        scored = evaluate_model(loaded.model, test, params.data)
    except (KeyError, ValueError) as error:
        raise InputError(
            f"champion v{version} cannot score this test set "
            f"(were the feature columns changed?): {error}"
        ) from error
    return Rival(version, loaded.run_id, loaded.model, loaded.card, scored)


def describe_test_set(test: pd.DataFrame, params: Params) -> dict[str, Any]:
    """What a model is judged on, as the reports show it: where the rows come from, their
    digest and count, and the balance of the target."""
    data_params = params.data
    source = data_params.test_source or (
        f"{data_params.source} (test_size {data_params.test_size}, seed {data_params.seed})"
    )
    target = test[data_params.target]
    if data_params.task == "classification":
        shares = target.astype(str).value_counts(normalize=True).sort_index()
        balance: dict[str, float] = {str(k): round(float(v), 4) for k, v in shares.items()}
    else:
        numbers = pd.to_numeric(target)
        balance = {"mean": round(float(numbers.mean()), 6), "std": round(float(numbers.std()), 6)}
    return {
        "source": source,
        "digest": data.frame_digest(test),
        "rows": len(test),
        "balance": balance,
    }


AGAIN = " — on the champion's test set"


def on_the_champions_test_set(
    settings: Settings,
    model: Any,
    card: ModelCard,
    rival: Rival,
    theirs: dict[str, Any],
    latency: dict[str, Any],
    params: Params,
    unmeasured: list[str],
) -> list[Criterion]:
    """The test set changed since the champion was gated (a new source, a new split): the
    candidate is judged on the champion's test set as well — its thresholds, and the paired
    comparison with the champion — so a test set chosen to flatter it is not enough."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mlship-champion-test-") as folder:
        found = runs.kept_test_split(
            settings.tracking_uri, rival.run_id, theirs["digest"], Path(folder)
        )
        if found is None:
            unmeasured.append(
                "the candidate on the champion's test set: the champion's run kept no copy "
                "of it (gated before test splits were kept)"
            )
            return []
        rows = data.select_columns(read_split(found), params.data, "the champion's test set")
    task = params.data.task
    try:
        candidate = evaluate_model(model, rows, params.data, card.baseline)
        champion = evaluate_model(rival.model, rows, params.data)
    except (KeyError, ValueError) as error:
        raise InputError(
            f"the champion's test set cannot be scored by these models (were the feature "
            f"columns changed?): {error}"
        ) from error
    found_criteria = threshold_criteria(candidate.metrics, latency, params.gate, task)
    found_criteria = [c for c in found_criteria if not c.name.startswith("us_per_row")]
    found_criteria += champion_criteria(
        candidate.predictions["actual"].to_numpy(),
        candidate.predictions["predicted"].to_numpy(),
        champion.predictions["predicted"].to_numpy(),
        list(card.classes),
        params.gate,
        rival.version,
        task,
    )
    return [replace(c, name=c.name + AGAIN) for c in found_criteria]


def behaviour(
    model: Any, test: pd.DataFrame, params: Params, settings: BehaviourParams
) -> list[Criterion]:
    """Predict functions over real test rows (invariance) and bare texts (functionality)."""
    column = settings.column
    limit = settings.invariance.rows if settings.invariance else 0
    base_rows = test.head(limit).reset_index(drop=True)
    regression = params.data.task == "regression"

    def predict(texts: list[str]) -> list[Answer]:
        if len(texts) == len(base_rows):
            frame = base_rows.assign(**{column: texts})
        else:
            frame = pd.DataFrame({c: [None] * len(texts) for c in params.data.feature_columns})
            frame[column] = texts
        answers = model.predict(feature_frame(frame, params.data))
        return [float(a) if regression else str(a) for a in answers]

    texts = [str(t) for t in base_rows[column]]
    return behaviour_criteria(predict, texts, settings)
