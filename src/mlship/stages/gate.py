"""The gate stage: judge the evaluated candidate and write its reports.

Freshness (DVC), thresholds on the evaluation, behaviour on the test split, a paired
comparison with the registry's @champion on the same rows, and the data contract's verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from sklearn.pipeline import Pipeline

from mlship import artifacts, files, gate_report, registry, vcs
from mlship.card import MODEL_FILE, ModelCard
from mlship.config import BehaviourParams, Params, Settings
from mlship.criteria import (
    Criterion,
    behaviour_criteria,
    champion_criteria,
    contract_criterion,
    threshold_criteria,
)
from mlship.dvc_repo import stale_stages
from mlship.errors import InputError
from mlship.features import feature_frame
from mlship.paths import PipelinePaths
from mlship.stages.pipeline import read_split

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


def gate(
    params: Params, settings: Settings, paths: PipelinePaths, dvc_file: Path, params_file: Path,
    base_ref: str = "main", stale: StaleStages = stale_stages,
) -> GateResult:  # fmt: skip
    """Judge the candidate in paths.model_dir; InputError on missing, NaN or stale inputs."""
    outdated = stale(dvc_file)
    if outdated:
        raise InputError(
            "the evaluation is stale: these stages differ from dvc.lock: "
            + ", ".join(outdated) + "; run `dvc repro` first"
        )  # fmt: skip
    metrics = files.read_json(paths.metrics)
    card = ModelCard.load(paths.model_dir)
    run_id = card.require_run_id(paths.model_dir)
    criteria = threshold_criteria(metrics, files.read_json(paths.latency), params.gate)
    test = read_split(paths.test)
    rows = pd.read_csv(paths.predictions, dtype={"actual": str, "predicted": str})
    if len(rows) != len(test):
        raise InputError(
            f"{paths.predictions}: {len(rows)} rows, but the test split has {len(test)}"
        )
    if params.gate.behaviour is not None:
        pipeline = artifacts.load_model(paths.model_dir)
        criteria += behaviour(pipeline, test, params, params.gate.behaviour)
    champion = registry.alias_version(settings, registry.CHAMPION)
    champion_version = None if champion is None else str(champion.version)
    if champion_version is not None:
        champion_predicted = score_champion(settings, champion_version, test, params)
        criteria += champion_criteria(
            rows["actual"].to_numpy(), rows["predicted"].to_numpy(), champion_predicted,
            list(card.classes), params.gate, champion_version,
        )  # fmt: skip
    criteria.append(contract_criterion(files.read_json(paths.contract_json)))

    context = {
        "candidate_run_id": run_id,
        "git_sha": card.git.sha,
        "champion_version": champion_version,
        "dvc_lock_sha256": files.sha256(dvc_file.with_suffix(".lock")),
        "model_sha256": files.sha256(paths.model_dir / MODEL_FILE),
        "base_ref": base_ref,
        "judged_at": artifacts.utc_now(),
    }
    diff = params_diff(base_ref, params_file)
    files.write_json(paths.gate_json, gate_report.gate_json(criteria, context))
    files.write_text(
        paths.gate_md,
        gate_report.gate_markdown(criteria, metrics["confusion_matrix"], diff, context),
    )
    files.write_with(paths.gate_junit, lambda temp: gate_report.gate_junit(criteria, temp))
    return GateResult(criteria, champion_version, paths.gate_md)


def score_champion(settings: Settings, version: str, test: pd.DataFrame, params: Params) -> Any:
    """The champion's predicted labels on this test split."""
    model = registry.load_version_model(settings, version)
    try:
        return model.predict(feature_frame(test, params.data)).astype(str)
    except (KeyError, ValueError) as error:
        raise InputError(
            f"champion v{version} cannot score this test set "
            f"(were the feature columns changed?): {error}"
        ) from error


def behaviour(
    pipeline: Pipeline, test: pd.DataFrame, params: Params, settings: BehaviourParams
) -> list[Criterion]:
    """Predict functions over real test rows (invariance) and bare texts (functionality)."""
    column = settings.column
    limit = settings.invariance.rows if settings.invariance else 0
    base_rows = test.head(limit).reset_index(drop=True)

    def predict(texts: list[str]) -> list[str]:
        if len(texts) == len(base_rows):
            frame = base_rows.assign(**{column: texts})
        else:
            frame = pd.DataFrame({c: [None] * len(texts) for c in params.data.feature_columns})
            frame[column] = texts
        return [str(label) for label in pipeline.predict(feature_frame(frame, params.data))]

    texts = [str(t) for t in base_rows[column]]
    return behaviour_criteria(predict, texts, settings)


def params_diff(base_ref: str, params_file: Path) -> list[tuple[str, Any, Any]] | None:
    """What changed in params.yaml since `base_ref`; None when there is no base to compare."""
    shown = vcs.file_at(base_ref, params_file)
    base = yaml.safe_load(shown) if shown is not None else None
    if not isinstance(base, dict):
        return None
    current = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    return gate_report.params_diff(base, current)
