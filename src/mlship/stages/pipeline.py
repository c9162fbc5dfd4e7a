"""The DVC stages: ingest -> validate -> train -> evaluate. dvc.yaml passes every path."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlship import files
from mlship.card import MODEL_FILE, PROFILE_FILE, DataInfo, GitInfo, MlflowInfo, ModelCard
from mlship.config.params import CustomModelParams, EstimatorParams, Params
from mlship.config.settings import Settings
from mlship.errors import InputError
from mlship.monitor import drift
from mlship.paths import PipelinePaths
from mlship.pipeline import artifacts, contract, data
from mlship.pipeline.contract import Check
from mlship.pipeline.evaluate import Evaluation, evaluate_model, measure_latency, trivial_answer
from mlship.pipeline.features import feature_frame
from mlship.pipeline.importing import local_package, package_path, project_packages, untracked_code
from mlship.pipeline.labels import unwrapped
from mlship.pipeline.train import features_of, fit
from mlship.registry import runs
from mlship.vcs import git_state


def read_split(path: Path) -> pd.DataFrame:
    return files.read_table(str(path))


@dataclass(frozen=True)
class Ingested:
    train_rows: int
    test_rows: int
    report: dict[str, Any]


def ingest_splits(params: Params) -> data.Ingested:
    """The declared sources loaded, their declared columns kept, split and de-duplicated."""
    train_raw = data.load_source(params.data.source)
    test_source = params.data.test_source
    test_raw = data.load_source(test_source) if test_source else None
    return data.ingest(params.data, train_raw, test_raw)


def ingest(params: Params, train_out: Path, test_out: Path, report: Path) -> Ingested:
    """Load the declared sources, keep the declared columns, split and de-duplicate."""
    result = ingest_splits(params)
    files.write_parquet(train_out, result.train)
    files.write_parquet(test_out, result.test)
    files.write_json(report, result.report)
    return Ingested(len(result.train), len(result.test), result.report)


@dataclass(frozen=True)
class ContractVerdict:
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def breach_message(self) -> str:
        return contract.breach_message(self.checks)


def validate(
    params: Params, train: Path, test: Path, report_json: Path, report_md: Path
) -> ContractVerdict:
    """Check the data contract; both reports are written whatever the verdict."""
    checks = contract.check_contract(
        read_split(train), read_split(test), params.data, params.validate_
    )
    files.write_json(report_json, contract.contract_report(checks))
    files.write_text(report_md, contract.contract_markdown(checks))
    return ContractVerdict(checks)


@dataclass(frozen=True)
class ModelMakeup:
    """What a fitted model is made of, beyond scikit-learn itself."""

    estimator: str  # import path of the final estimator
    trusted_types: tuple[str, ...]  # types it holds beyond the built-in trust list
    code: tuple[str, ...]  # the team's packages among those types' modules
    requirements: dict[str, str]  # distributions those types (and the estimator) come from


def makeup(model: Any) -> ModelMakeup:
    final = unwrapped(model.steps[-1][1] if hasattr(model, "steps") else model)
    estimator = f"{type(final).__module__}.{type(final).__qualname__}"
    needed = artifacts.untrusted_types(model)
    code: set[str] = set()
    distributions: set[str] = set()
    by_module = metadata.packages_distributions()
    for name in {*needed, estimator}:
        root = name.split(".")[0]
        module = sys.modules.get(root)
        if module is not None and local_package(module) is not None:
            code.add(root)
        else:
            distributions.update(by_module.get(root, []))
    requirements = {name: metadata.version(name) for name in sorted(distributions)}
    return ModelMakeup(estimator, tuple(needed), tuple(sorted(code)), requirements)


def named_code(params: Params) -> set[str]:
    """The project's own packages that params.yaml names: the factory, the estimator class,
    the trusted types."""
    model = params.train.model
    named = [*params.train.trusted_types]
    if isinstance(model, CustomModelParams):
        named.append(model.factory)
    elif isinstance(model, EstimatorParams):
        named.append(model.class_)
    return project_packages(named)


def refuse_untracked_code(packages: set[str], dependencies: tuple[str, ...]) -> None:
    """Every file the model is made from must be a dependency of the train stage, or a change
    to it would leave a stale model that still passes the gate."""
    outside = untracked_code(packages, dependencies, Path.cwd())
    if outside:
        where = ", ".join(f"{name} ({package_path(name).name})" for name in outside)
        raise InputError(
            f"the model's code is outside the train stage's dependencies in dvc.yaml: {where}. "
            "A change there would not retrain the model. Move it under model/ (and name it "
            f"model.{outside[0]}... in params.yaml), or add {outside[0]!r} to the train "
            "stage's deps in dvc.yaml"
        )


def example_row(frame: pd.DataFrame, params: Params) -> dict[str, Any]:
    """The first training row with every feature present, as JSON values."""
    features = feature_frame(frame, params.data)
    complete = features.dropna()
    row = (complete if len(complete) else features).head(1)
    if row.empty:
        return {}
    return {
        str(c): (None if pd.isna(v) else v.item() if hasattr(v, "item") else v)
        for c, v in row.iloc[0].items()
    }


def describe(
    params: Params, name: str, model: Any, frame: pd.DataFrame, fit_seconds: float
) -> ModelCard:
    """The card of a model fitted on `frame`, once its types pass the trust policy."""
    made = makeup(model)
    artifacts.refuse_untrusted(list(made.trusted_types), params.train.trusted_types, "train")
    git = git_state()
    columns = params.data
    classifier = columns.task == "classification"
    return ModelCard(
        name=name,
        task=columns.task,
        features=contract.at_the_door(frame, features_of(params), params.validate_),
        dtypes={column: str(frame[column].dtype) for column in columns.feature_columns},
        target=columns.target,
        classes=tuple(str(c) for c in model.classes_) if classifier else (),
        probabilities=classifier and hasattr(model, "predict_proba"),
        estimator=made.estimator,
        trusted_types=made.trusted_types,
        code=tuple(sorted(named_code(params) | set(made.code))),
        requirements=made.requirements,
        params=params.model_dump(mode="json", by_alias=True),
        example=example_row(frame, params),
        data=DataInfo(train_rows=len(frame), train_digest=data.frame_digest(frame)),
        git=GitInfo(sha=git.sha, dirty=git.dirty),
        libraries=artifacts.library_versions(),
        trained_at=artifacts.utc_now(),
        fit_seconds=fit_seconds,
        baseline=trivial_answer(frame[columns.target], columns),
    )


def train(
    params: Params,
    settings: Settings,
    train_data: Path,
    model_dir: Path,
    tracked_code: tuple[str, ...] | None = None,
) -> ModelCard:
    """Fit the declared model, check its types against the trust policy, log it to MLflow,
    save it (skops) with its model card, the team's code it needs and the profile of its
    training data (drift's reference). With `tracked_code` (the train stage's deps), the
    team's code must lie inside them."""
    code = named_code(params)
    if tracked_code is not None:
        refuse_untracked_code(code, tracked_code)
    frame = data.select_columns(read_split(train_data), params.data, str(train_data))
    started = time.perf_counter()
    model = fit(params, frame)
    fit_seconds = round(time.perf_counter() - started, 3)
    card = describe(params, settings.registered_name, model, frame, fit_seconds)
    if tracked_code is not None:
        refuse_untracked_code(set(card.code), tracked_code)
    # drift's reference: the training data and the model's answers on it
    answers = model.predict(feature_frame(frame, params.data))
    reference = drift.profile(frame, params.data, np.asarray(answers).tolist())
    example = feature_frame(frame.head(3), params.data)
    with files.atomic_folder(model_dir) as staging:  # a failure keeps the previous model
        artifacts.save_model(model, card, staging)
        reference.save(staging / PROFILE_FILE)
        # the run keeps this very file: a signature over it holds in the registry too
        logged = runs.log_training(
            settings, card, model, example, reference.model_dump(mode="json"), staging / MODEL_FILE
        )
        card = card.updated(
            mlflow=MlflowInfo(
                run_id=logged.run_id,
                experiment_id=logged.experiment_id,
                model_uri=logged.model_uri,
                tracking_uri=settings.tracking_uri,
            )
        )
        card.save(staging)
    return card


@dataclass(frozen=True)
class EvaluationFiles:
    metrics: Path
    latency: Path
    predictions: Path
    confusion: Path  # classification's plot; empty for regression
    roc: Path
    precision_recall: Path
    residuals: Path  # regression's plot; empty for classification

    def all(self) -> list[Path]:
        return [
            self.metrics,
            self.latency,
            self.predictions,
            self.confusion,
            self.roc,
            self.precision_recall,
            self.residuals,
        ]

    @classmethod
    def of(cls, paths: PipelinePaths) -> EvaluationFiles:
        return cls(
            paths.metrics,
            paths.latency,
            paths.predictions,
            paths.confusion,
            paths.roc,
            paths.precision_recall,
            paths.residuals,
        )


def evaluate(
    params: Params, settings: Settings, model_dir: Path, test: Path, out: EvaluationFiles
) -> Evaluation:
    """Score the held-out set; write metrics, curves and per-row predictions; log to MLflow."""
    card = ModelCard.load(model_dir)
    model = artifacts.load_model(model_dir, card)
    run_id = card.require_run_id(model_dir)
    frame = data.select_columns(read_split(test), params.data, str(test))
    result = evaluate_model(model, frame, params.data, card.baseline)
    timing = measure_latency(model, frame, params.data)
    files.write_json(out.metrics, result.metrics)
    files.write_json(out.latency, timing)
    files.write_with(out.predictions, lambda temp: result.predictions.to_csv(temp, index=False))
    files.write_with(out.confusion, lambda temp: result.confusion_rows().to_csv(temp, index=False))
    files.write_json(out.roc, {"roc": result.roc})
    files.write_json(out.precision_recall, {"precision_recall": result.precision_recall})
    files.write_json(out.residuals, {"residuals": result.residuals})
    runs.log_evaluation(settings, run_id, result.scalars() | timing_scalars(timing), out.all())
    return result


def timing_scalars(timing: dict[str, Any]) -> dict[str, float]:
    return {
        key: float(value)
        for key, value in timing.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
