"""Serving a model, scoring files with it, and watching it once deployed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from mlship.choices import ChallengerMode, ScoringEngine
from mlship.cli.common import (
    DEFAULT_PARAMS,
    ParamsOption,
    app,
    console,
    env_settings,
    fail,
    note,
    read_params,
    running,
)
from mlship.config.settings import Settings
from mlship.errors import CheckError, InputError, MlshipError, NoVerdictError


@app.command("serve")
def serve_command(
    model: Annotated[
        str, typer.Option(help="a model directory, or models:/<name>@<alias> | /<version>")
    ] = "models",
    host: Annotated[str, typer.Option(help="the address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="server processes")] = 1,
    challenger: Annotated[
        str | None, typer.Option(help="a second model to shadow or split traffic with")
    ] = None,
    challenger_mode: Annotated[
        ChallengerMode, typer.Option(help="shadow: score and log only; split: answer a share")
    ] = ChallengerMode.shadow,
    challenger_weight: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="share of requests in split mode")
    ] = 0.1,
    metrics: Annotated[
        Path | None,
        typer.Option(help="a model directory's evaluation to show (metrics/evaluate.json)"),
    ] = None,
) -> None:
    """Serve the model: /predict, /invocations (MLflow), /v2 (Open Inference Protocol),
    /metrics, /model, /health and /ready."""
    from mlship.serving.threads import limit_native_threads

    limit_native_threads()  # before scikit-learn and NumPy load, in this and worker processes
    from mlship.serving.options import Challenger
    from mlship.serving.runner import ServeOptions, serve

    if not model.startswith("models:/") and not Path(model).is_dir():
        fail(InputError(f"{model}: no such model directory (or give a models:/ URI)"))
    if metrics is not None and not metrics.is_file():
        fail(InputError(f"--metrics {metrics}: no such file"))
    second = Challenger(challenger, challenger_mode, challenger_weight) if challenger else None
    try:
        options = ServeOptions(model, host, port, workers, second, metrics_file=metrics)
        serve(options, env_settings())
    except OSError as error:
        fail(InputError(f"cannot listen on {host}:{port}: {error.strerror}"))
    except MlshipError as error:  # a bad tokens file, a model refused at preload
        fail(error)


@app.command()
def score(
    input_path: Annotated[
        str,
        typer.Option(
            "--input",
            help="a .csv, .parquet or .jsonl of feature rows (spark: also a folder or glob, "
            "local or s3a:// or gs://)",
        ),
    ],
    output_path: Annotated[
        str,
        typer.Option(
            "--output",
            help="local: a .csv or .parquet file; spark: a new folder (Parquet by outcome)",
        ),
    ],
    model: Annotated[
        str, typer.Option(help="the model directory (spark: or models:/NAME@ALIAS)")
    ] = "models",
    chunk_rows: Annotated[int, typer.Option(min=1, help="rows per model call")] = 10_000,
    engine: Annotated[ScoringEngine, typer.Option(help="where to score")] = ScoringEngine.local,
    master: Annotated[
        str | None,
        typer.Option(
            help="spark: local[*] (the default, or spark-submit's master under spark-submit), "
            "spark://HOST:PORT, k8s://..., yarn"
        ),
    ] = None,
    conf: Annotated[
        list[str] | None, typer.Option(help="spark: a KEY=VALUE Spark setting (repeatable)")
    ] = None,
    fail_fast: Annotated[
        bool, typer.Option(help="stop at the first refused row instead of keeping it apart")
    ] = False,
) -> None:
    """Batch scoring: every input row with label, confidence and class probabilities, checked
    like a request to the server (the data contract: types, missing values, categories); a
    row the checks refuse is kept apart with its reason. Local: chunk by chunk in this
    process, refused rows in <output>.refused.<suffix>. Spark: partitions scored on a
    cluster, refused rows under outcome=refused, and a manifest of what was read, scored and
    refused."""
    settings = env_settings()
    if engine is ScoringEngine.spark:
        job = (model, input_path, output_path, chunk_rows, master, conf or [], fail_fast)
        _score_on_spark(settings, *job)
        return
    from mlship.batch.local import score_file

    started = time.perf_counter()

    def progress(rows: int) -> None:
        rate = rows / max(time.perf_counter() - started, 1e-9)
        note(f"{rows:,} rows scored ({rate:,.0f} rows/s)")

    if model.startswith("models:/") or not Path(model).is_dir():
        fail(InputError(f"--model {model}: no such model directory (--engine local)"))
    with running("score"):
        done = score_file(
            Path(model),
            settings.model_name,
            input_path,
            Path(output_path),
            chunk_rows,
            progress,
            fail_fast,
        )
    console.print(
        f"  {done.scored} of {done.rows} rows scored by {done.model} v{done.version} -> "
        f"{output_path}",
        soft_wrap=True,
    )
    if done.refused_path is not None:
        note(f"{done.refused} rows refused, with the reason: {done.refused_path}")


def _score_on_spark(
    settings: Settings,
    model: str,
    input_path: str,
    output_path: str,
    chunk_rows: int,
    master: str | None,
    conf: list[str],
    fail_fast: bool,
) -> None:
    import tempfile

    from mlship.batch import spark

    pairs = [item.partition("=") for item in conf]
    bad = [item for item, (key, eq, _) in zip(conf, pairs, strict=True) if not key or not eq]
    if bad:
        fail(InputError(f"--conf {bad[0]!r}: expected KEY=VALUE"))
    with running("score"), tempfile.TemporaryDirectory(prefix="mlship-spark-") as staging:
        model_dir = spark.staged_model(settings, model, Path(staging) / "model")
        job = spark.SparkJob(
            model_dir,
            settings.model_name,
            input_path,
            output_path,
            master,
            {key: value for key, _, value in pairs},
            chunk_rows,
            fail_fast,
        )
        done = spark.score(job, note)
    console.print(
        f"  {done.rows_scored} rows scored, {done.rows_refused} refused, by {done.model_name} "
        f"v{done.model_version} on {done.master} in {done.wall_seconds:.1f} s -> {output_path}"
    )


# --- after deployment ---------------------------------------------------------------------


@app.command()
def drift(
    current: Annotated[
        str,
        typer.Option(
            help="current rows: a .csv/.parquet/.jsonl file, or the server's sample folder"
        ),
    ],
    reference: Annotated[
        str,
        typer.Option(
            help="a model directory, models:/NAME@ALIAS, a saved profile (.json) or a data file"
        ),
    ] = "models",
    model: Annotated[
        Path | None,
        typer.Option(help="score both sides with this model directory to compare its answers too"),
    ] = None,
    out: Annotated[Path, typer.Option(help="where the reports go")] = Path("reports"),
    params_file: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Has the data drifted from the reference? Per column: KS (numeric), chi-square
    (categorical) and PSI, judged by params.yaml `monitor`. Exit 1 on drift, 4 when too few
    current rows allow no verdict."""
    from mlship.stages import monitor

    params = read_params(params_file)
    settings = env_settings(params)
    with running("drift"):
        verdict = monitor.drift_check(params, settings, reference, current, out, model)
        if verdict.report.drifted:
            raise CheckError(f"{verdict.report.details()}\nreport: {verdict.written[2]}")
        if not verdict.report.judged:
            raise NoVerdictError(
                f"{verdict.report.summary}: fewer than monitor.min_rows "
                f"({params.monitor.min_rows}) current rows; report: {verdict.written[2]}"
            )
    console.print(f"  {verdict.report.summary}; report: {verdict.written[2]}")


@app.command("monitor")
def monitor_command(
    live: Annotated[
        str | None,
        typer.Option(help="the server's sample folder; default: MLSHIP_MONITOR_SINK"),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(
            help="what the live model was trained on: a model directory or models:/NAME@ALIAS;"
            " default: models:/<params.yaml name>@champion"
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="where the reports go")] = Path("reports/monitor"),
    params_file: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Should the model be retrained? Drift of the sampled live inputs and answers, and live
    accuracy (or RMSE) from feedback against params.yaml `monitor`. Exit 1 when either
    fails: the scheduled job then retrains through the gated delivery."""
    from mlship.stages.monitor import monitor

    params = read_params(params_file)
    settings = env_settings(params)
    where = live or settings.monitor_sink
    if where is None:
        message = "give --live or set MLSHIP_MONITOR_SINK (the folder the server samples to)"
        fail(InputError(f"monitor: {message}"))
    trained_on = reference or f"models:/{settings.registered_name}@champion"
    with running("monitor"):
        found = monitor(params, settings, trained_on, where, out)
        console.print(f"  drift: {found.drift.report.summary}")
        console.print(f"  live quality: {found.quality_line}")
        if found.retrain:
            raise CheckError(f"retrain: {found.reason}; reports under {out}")
