"""The one command-line entry point. Thin glue: parse flags, call the core, map the outcome
to an exit code (0 ok, 1 a check failed, 2 bad input). Paths come from dvc.yaml's `vars`.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from mlship.config import Params, Settings, load_params
from mlship.errors import CheckError, InputError

app = typer.Typer(
    help="mlship: ingest -> validate -> train -> evaluate, tracked in MLflow.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)

ParamsOption = Annotated[
    Path, typer.Option("--params", help="the params file that says what to build")
]
DEFAULT_PARAMS = Path("params.yaml")


def _fail(error: Exception, code: int) -> NoReturn:
    console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Run a stage body: show progress, map our errors to exit codes, report the time."""
    start = time.perf_counter()
    try:
        with console.status(f"[bold]{name}[/] ..."):
            yield
    except InputError as error:
        _fail(error, 2)
    except CheckError as error:
        _fail(error, 1)
    console.print(f"[green]✓[/] {name} ({time.perf_counter() - start:.1f} s)")


def _settings() -> Settings:
    return Settings()


@app.callback()
def main() -> None:
    """Set up logging once per process; nothing happens at import time."""
    try:
        level = _settings().log_level
    except ValueError as error:
        _fail(InputError(f"environment: {error}"), 2)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )


def _params(path: Path) -> Params:
    try:
        return load_params(path)
    except InputError as error:
        _fail(error, 2)


@app.command()
def ingest(
    train_out: Annotated[Path, typer.Option(help="where the train split is written")],
    test_out: Annotated[Path, typer.Option(help="where the test split is written")],
    report: Annotated[Path, typer.Option(help="the ingest report (JSON)")],
    params_file: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Load the declared sources, keep the declared columns, split and de-duplicate."""
    from mlship import data, files

    params = _params(params_file)
    with stage("ingest"):
        train_raw = data.load_source(params.data.source)
        test_source = params.data.test_source
        test_raw = data.load_source(test_source) if test_source else None
        result = data.ingest(params.data, train_raw, test_raw)
        files.write_parquet(train_out, result.train)
        files.write_parquet(test_out, result.test)
        files.write_json(report, result.report)
    kept = result.report["rows_kept"]
    console.print(f"  train {kept['train']} rows, test {kept['test']} rows -> {train_out.parent}")


def _read_split(path: Path) -> Any:
    from mlship import files

    return files.read_table(str(path))


@app.command()
def validate(
    train: Annotated[Path, typer.Option(help="the ingested train split")],
    test: Annotated[Path, typer.Option(help="the ingested test split")],
    report_json: Annotated[Path, typer.Option(help="the contract report (JSON)")],
    report_md: Annotated[Path, typer.Option(help="the contract report (Markdown)")],
    params_file: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Check the data contract in params.yaml; exit 1 naming each breached rule."""
    from mlship import contract, files

    params = _params(params_file)
    with stage("validate"):
        checks = contract.check_contract(
            _read_split(train), _read_split(test), params.data, params.validate_
        )
        files.write_json(report_json, contract.contract_report(checks))
        files.write_text(report_md, contract.contract_markdown(checks))
        if not all(check.passed for check in checks):
            raise CheckError(f"{contract.breach_message(checks)}\nreport: {report_md}")
    console.print(f"  {len(checks)} rules passed; report: {report_md}")


@app.command()
def train(
    train_data: Annotated[Path, typer.Option("--train", help="the ingested train split")],
    model_dir: Annotated[Path, typer.Option(help="where the model and its card are written")],
    params_file: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Fit the declared pipeline, save it (skops) with a model card, log it to MLflow."""
    from mlship import artifacts, registry
    from mlship import train as training
    from mlship.data import frame_digest
    from mlship.features import feature_frame

    params = _params(params_file)
    settings = _settings()
    with stage("train"):
        frame = _read_split(train_data)
        started = time.perf_counter()
        pipeline = training.fit(params, frame)
        git = artifacts.git_state()
        card: dict[str, Any] = {
            "task": "classification",
            "features": {
                "text": list(params.data.text_columns),
                "categorical": list(params.data.categorical_columns),
                "numeric": list(params.data.numeric_columns),
            },
            "dtypes": {column: str(frame[column].dtype) for column in params.data.feature_columns},
            "target": params.data.target,
            "classes": [str(c) for c in pipeline.classes_],
            "params": params.model_dump(mode="json", by_alias=True),
            "data": {"train_rows": len(frame), "train_digest": frame_digest(frame)},
            "git": {"sha": git.sha, "dirty": git.dirty},
            "libraries": artifacts.library_versions(),
            "trained_at": artifacts.utc_now(),
            "fit_seconds": round(time.perf_counter() - started, 3),
        }
        example = feature_frame(frame.head(3), params.data)
        experiment_id, run_id = registry.log_training(
            settings, card["params"], card, pipeline, example
        )
        card["mlflow"] = {
            "experiment_id": experiment_id,
            "run_id": run_id,
            "tracking_uri": settings.tracking_uri,
        }
        artifacts.save_model(pipeline, card, model_dir)
    console.print(f"  model -> {model_dir}; MLflow run {run_id}")


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Option(help="the trained model directory")],
    test: Annotated[Path, typer.Option(help="the held-out test split")],
    metrics: Annotated[Path, typer.Option(help="quality metrics (JSON)")],
    latency: Annotated[Path, typer.Option(help="measured predict latency (JSON)")],
    predictions: Annotated[Path, typer.Option(help="per-row predictions (CSV)")],
    roc: Annotated[Path, typer.Option(help="ROC curve points (JSON)")],
    precision_recall: Annotated[Path, typer.Option(help="precision-recall points (JSON)")],
    params_file: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Score the held-out set; write metrics, curves and per-row predictions; log to MLflow."""
    from mlship import artifacts, files, registry
    from mlship import evaluate as evaluation

    params = _params(params_file)
    settings = _settings()
    with stage("evaluate"):
        pipeline = artifacts.load_model(model_dir)
        card = artifacts.load_card(model_dir)
        frame = _read_split(test)
        result = evaluation.evaluate(pipeline, frame, params.data)
        timing = evaluation.measure_latency(pipeline, frame, params.data)
        files.write_json(metrics, result.metrics)
        files.write_json(latency, timing)
        files.write_with(predictions, lambda temp: result.predictions.to_csv(temp, index=False))
        files.write_json(roc, {"roc": result.roc})
        files.write_json(precision_recall, {"precision_recall": result.precision_recall})
        scalars = {
            key: value
            for key, value in {**result.metrics, **timing}.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
        for label, values in result.metrics["per_class"].items():
            scalars[f"recall_{label}"] = values["recall"]
            scalars[f"precision_{label}"] = values["precision"]
        run_id = card.get("mlflow", {}).get("run_id")
        if not run_id:
            raise InputError(f"{model_dir}: the model card has no MLflow run id")
        registry.log_evaluation(
            settings, run_id, scalars, [metrics, latency, predictions, roc, precision_recall]
        )
    m = result.metrics
    console.print(f"  accuracy {m['accuracy']:.4f}, macro F1 {m['macro_f1']:.4f} -> {metrics}")


@app.command()
def summary(
    dvc_file: Annotated[Path, typer.Option(help="dvc.yaml, whose `vars` hold the paths")] = Path(
        "dvc.yaml"
    ),
) -> None:
    """Print the outcome of the last pipeline run: metrics, reports, the MLflow run."""
    from mlship import report

    try:
        report.print_summary(dvc_file, Console())
    except InputError as error:
        _fail(error, 2)
