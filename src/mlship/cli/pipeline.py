"""The DVC stages: each is one `cmd` in dvc.yaml, with its inputs and outputs as flags."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlship.cli.common import (
    DEFAULT_DVC_FILE,
    DEFAULT_PARAMS,
    DvcFileOption,
    ParamsOption,
    app,
    console,
    env_settings,
    read_params,
    running,
)
from mlship.errors import CheckError


@app.command()
def ingest(
    train_out: Annotated[Path, typer.Option(help="where the train split is written")],
    test_out: Annotated[Path, typer.Option(help="where the test split is written")],
    report: Annotated[Path, typer.Option(help="the ingest report (JSON)")],
    params_file: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Load the declared sources, keep the declared columns, split and de-duplicate."""
    from mlship.stages import pipeline

    params = read_params(params_file)
    with running("ingest"):
        done = pipeline.ingest(params, train_out, test_out, report)
    console.print(
        f"  train {done.train_rows} rows, test {done.test_rows} rows -> {train_out.parent}"
    )


@app.command()
def validate(
    train: Annotated[Path, typer.Option(help="the ingested train split")],
    test: Annotated[Path, typer.Option(help="the ingested test split")],
    report_json: Annotated[Path, typer.Option(help="the contract report (JSON)")],
    report_md: Annotated[Path, typer.Option(help="the contract report (Markdown)")],
    params_file: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Check the data contract in params.yaml; exit 1 naming each breached rule."""
    from mlship.stages import pipeline

    params = read_params(params_file)
    with running("validate"):
        verdict = pipeline.validate(params, train, test, report_json, report_md)
        if not verdict.passed:
            raise CheckError(f"{verdict.breach_message()}\nreport: {report_md}")
    console.print(f"  {len(verdict.checks)} rules passed; report: {report_md}")


@app.command()
def train(
    train_data: Annotated[Path, typer.Option("--train", help="the ingested train split")],
    model_dir: Annotated[Path, typer.Option(help="where the model and its card are written")],
    params_file: ParamsOption = DEFAULT_PARAMS,
    dvc_file: DvcFileOption = DEFAULT_DVC_FILE,
) -> None:
    """Fit the declared pipeline, save it (skops) with a model card, log it to MLflow. The
    team's code it uses must be a dependency of the train stage in dvc.yaml."""
    from mlship.paths import stage_dependencies
    from mlship.stages import pipeline

    params = read_params(params_file)
    settings = env_settings(params)
    with running("train"):
        tracked = stage_dependencies(dvc_file, "train")
        card = pipeline.train(params, settings, train_data, model_dir, tracked)
    console.print(f"  model -> {model_dir}; MLflow run {card.run_id}")


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Option(help="the trained model directory")],
    test: Annotated[Path, typer.Option(help="the held-out test split")],
    metrics: Annotated[Path, typer.Option(help="quality metrics (JSON)")],
    latency: Annotated[Path, typer.Option(help="measured predict latency (JSON)")],
    predictions: Annotated[Path, typer.Option(help="per-row predictions (CSV)")],
    confusion: Annotated[Path, typer.Option(help="actual/predicted for the confusion plot")],
    roc: Annotated[Path, typer.Option(help="ROC curve points (JSON)")],
    precision_recall: Annotated[Path, typer.Option(help="precision-recall points (JSON)")],
    residuals: Annotated[Path, typer.Option(help="predicted against actual (JSON)")],
    params_file: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Score the held-out set; write metrics, plot points and per-row predictions; log to
    MLflow. Each task fills its own plots and leaves the others empty."""
    from mlship.stages import pipeline

    params = read_params(params_file)
    settings = env_settings(params)
    out = pipeline.EvaluationFiles(
        metrics, latency, predictions, confusion, roc, precision_recall, residuals
    )
    with running("evaluate"):
        result = pipeline.evaluate(params, settings, model_dir, test, out)
    m = result.metrics
    shown = ("accuracy", "macro_f1") if "accuracy" in m else ("rmse", "r2")
    console.print(
        f"  {', '.join(f'{k} {m[k]:.4f}' for k in shown if m.get(k) is not None)} -> {metrics}"
    )
