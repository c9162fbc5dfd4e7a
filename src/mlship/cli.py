"""The one command-line entry point: flags in, a stage called, its result printed, an exit
code out (see mlship.errors: 0 done, 1 a check failed, 2 bad input, 3 a service did not
answer). Paths come from dvc.yaml's `vars`; heavy imports happen inside the commands.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from mlship.choices import ChallengerMode, Environment, LoadTarget
from mlship.config import Params, Settings, load_params
from mlship.errors import CheckError, InputError, ServiceError
from mlship.paths import PipelinePaths

app = typer.Typer(
    help="mlship: ingest -> validate -> train -> evaluate (DVC, MLflow) -> gate -> register "
    "-> image -> loadtest -> deploy -> promote; and serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)

ParamsOption = Annotated[
    Path, typer.Option("--params", help="the params file that says what to build")
]
DvcFileOption = Annotated[
    Path, typer.Option("--dvc-file", help="dvc.yaml, whose `vars` declare the artifact paths")
]
DEFAULT_PARAMS = Path("params.yaml")
DEFAULT_DVC_FILE = Path("dvc.yaml")


def _fail(error: Exception, code: int) -> NoReturn:
    console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Run a stage: show progress, map errors to exit codes, report the time taken."""
    start = time.perf_counter()
    try:
        with console.status(f"[bold]{name}[/] ..."):
            yield
    except (InputError, CheckError, ServiceError) as error:
        _fail(error, error.exit_code)
    except ValueError as error:  # a library's complaint about a value we passed on
        _fail(InputError(f"{name}: {error}"), InputError.exit_code)
    console.print(f"[green]✓[/] {name} ({time.perf_counter() - start:.1f} s)")


def _note(line: str) -> None:
    console.print(f"  [dim]{escape(line)}[/]", highlight=False)


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as error:
        _fail(InputError(f"environment: {error}"), InputError.exit_code)


def _params(path: Path) -> Params:
    try:
        return load_params(path)
    except InputError as error:
        _fail(error, error.exit_code)


def _paths(dvc_file: Path) -> PipelinePaths:
    try:
        return PipelinePaths.read(dvc_file)
    except InputError as error:
        _fail(error, error.exit_code)


@app.callback()
def main() -> None:
    """Set up logging once per process; nothing happens at import time."""
    # MLflow's download progress bars would flood CI logs
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.basicConfig(
        level=_settings().log_level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )


# --- the DVC stages -----------------------------------------------------------------------


@app.command()
def ingest(
    train_out: Annotated[Path, typer.Option(help="where the train split is written")],
    test_out: Annotated[Path, typer.Option(help="where the test split is written")],
    report: Annotated[Path, typer.Option(help="the ingest report (JSON)")],
    params_file: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Load the declared sources, keep the declared columns, split and de-duplicate."""
    from mlship.stages import pipeline

    params = _params(params_file)
    with stage("ingest"):
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

    params = _params(params_file)
    with stage("validate"):
        verdict = pipeline.validate(params, train, test, report_json, report_md)
        if not verdict.passed:
            raise CheckError(f"{verdict.breach_message()}\nreport: {report_md}")
    console.print(f"  {len(verdict.checks)} rules passed; report: {report_md}")


@app.command()
def train(
    train_data: Annotated[Path, typer.Option("--train", help="the ingested train split")],
    model_dir: Annotated[Path, typer.Option(help="where the model and its card are written")],
    params_file: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Fit the declared pipeline, save it (skops) with a model card, log it to MLflow."""
    from mlship.stages import pipeline

    params = _params(params_file)
    settings = _settings()
    with stage("train"):
        card = pipeline.train(params, settings, train_data, model_dir)
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

    params = _params(params_file)
    settings = _settings()
    out = pipeline.EvaluationFiles(
        metrics, latency, predictions, confusion, roc, precision_recall, residuals
    )
    with stage("evaluate"):
        result = pipeline.evaluate(params, settings, model_dir, test, out)
    m = result.metrics
    shown = ("accuracy", "macro_f1") if "accuracy" in m else ("rmse", "r2")
    console.print(f"  {', '.join(f'{k} {m[k]:.4f}' for k in shown if m.get(k) is not None)}"
                  f" -> {metrics}")  # fmt: skip


# --- gate, review, release ----------------------------------------------------------------


@app.command()
def gate(
    dvc_file: DvcFileOption = DEFAULT_DVC_FILE,
    base_ref: Annotated[str, typer.Option(help="the git ref the params diff compares with")] = (
        "main"
    ),
    params_file: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Judge the evaluated candidate: thresholds, the champion, behaviour, the data contract.

    Exit 0 on a pass, 1 when a criterion fails, 2 on missing, NaN or stale inputs.
    """
    from mlship.stages import gate as judging

    params = _params(params_file)
    settings = _settings()
    paths = _paths(dvc_file)
    with stage("gate"):
        verdict = judging.gate(params, settings, paths, dvc_file, params_file, base_ref)
        if not verdict.passed:
            raise CheckError(
                f"gate FAILED on {len(verdict.failed)} of {len(verdict.criteria)} criteria:\n"
                + "\n".join(f"  {c.name}: {c.detail}" for c in verdict.failed)
                + f"\nreport: {verdict.report}"
            )
    note = "" if verdict.champion_version else " (no champion yet: judged without a comparison)"
    console.print(f"  {len(verdict.criteria)} criteria passed{note}; report: {verdict.report}")


@app.command()
def report(
    dvc_file: DvcFileOption = DEFAULT_DVC_FILE, params_file: ParamsOption = DEFAULT_PARAMS
) -> None:
    """The run report: one self-contained HTML page (reports/report.html) with the verdict,
    the gate's criteria and the plots behind them; attached to the MLflow run."""
    from mlship.stages import review

    params = _params(params_file)
    settings = _settings()
    paths = _paths(dvc_file)
    with stage("report"):
        written = review.html_report(settings, paths, params.data.positive_label)
    console.print(f"  {written} ({written.stat().st_size / 1e3:.0f} kB)")


@app.command()
def summary(dvc_file: DvcFileOption = DEFAULT_DVC_FILE) -> None:
    """Print the outcome of the last pipeline run: metrics, reports, the MLflow run."""
    from mlship import report

    paths = _paths(dvc_file)
    try:
        report.print_summary(paths, Console())
    except InputError as error:
        _fail(error, error.exit_code)


@app.command()
def comment(
    base_ref: Annotated[str, typer.Option(help="the git ref the metric diff compares with")] = (
        "main"
    ),
    summary_only: Annotated[
        bool, typer.Option("--summary-only", help="GitHub: the job summary only, no comment")
    ] = False,
    dvc_file: DvcFileOption = DEFAULT_DVC_FILE,
) -> None:
    """The run's reports as one Markdown page: gate, metric diff against --base-ref, load test,
    deploys. In GitHub Actions it goes to the job summary and, on a pull request, into one
    comment updated in place; elsewhere it is printed."""
    from mlship.stages import review

    paths = _paths(dvc_file)
    with stage("comment"):
        published = review.publish(paths, os.environ, base_ref, summary_only)
    if os.environ.get("GITHUB_ACTIONS") != "true":
        typer.echo(published.page)
    else:
        console.print(f"  {published.note}")


@app.command()
def register(dvc_file: DvcFileOption = DEFAULT_DVC_FILE) -> None:
    """Register the gated model version with provenance tags and alias `candidate`."""
    from mlship.stages import release

    settings = _settings()
    paths = _paths(dvc_file)
    with stage("register"):
        version = release.register(settings, paths, dvc_file)
    console.print(f"  {settings.model_name} version {version} is now @candidate")


@app.command()
def promote(
    version: Annotated[
        str | None, typer.Option(help="the version to promote; default: @candidate")
    ] = None,
    approver: Annotated[
        str | None, typer.Option(help="who approved; default: read from the CI's record")
    ] = None,
    rollback: Annotated[
        bool, typer.Option("--rollback", help="move @champion back to the previous version")
    ] = False,
) -> None:
    """Move alias `champion`, recording who approved it, through which CI, and when."""
    from mlship.stages import release

    if rollback and version is not None:
        _fail(InputError("--rollback moves to the recorded previous version; drop --version"), 2)
    settings = _settings()
    with stage("promote"):
        if rollback:
            moved = release.rollback(settings, os.environ, approver)
        else:
            moved = release.promote(settings, os.environ, version, approver)
    who = moved.approval
    console.print(
        f"  {'rolled back' if rollback else 'promoted'}: {settings.model_name} version "
        f"{moved.version} is @champion (approved by {who.approver} via {who.via})"
    )


# --- serving ------------------------------------------------------------------------------


@app.command()
def serve(
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
) -> None:
    """Serve the model: /predict, /invocations (MLflow), /v2 (Open Inference Protocol),
    /metrics, /model, /health and /ready."""
    from mlship.serving.threads import limit_native_threads

    limit_native_threads()  # before scikit-learn and NumPy load, in this and worker processes
    from mlship.serving.plane import Challenger
    from mlship.serving.runner import ServeOptions
    from mlship.serving.runner import serve as run

    if not model.startswith("models:/") and not Path(model).is_dir():
        _fail(InputError(f"{model}: no such model directory (or give a models:/ URI)"), 2)
    second = Challenger(challenger, challenger_mode, challenger_weight) if challenger else None
    try:
        run(ServeOptions(model, host, port, workers, second), _settings())
    except OSError as error:
        _fail(InputError(f"cannot listen on {host}:{port}: {error.strerror}"), 2)


@app.command()
def score(
    input_path: Annotated[
        str, typer.Option("--input", help="a .csv, .parquet or .jsonl of feature rows")
    ],
    output_path: Annotated[
        Path, typer.Option("--output", help="where the scored rows go (.csv or .parquet)")
    ],
    model: Annotated[Path, typer.Option(help="the model directory")] = Path("models"),
    chunk_rows: Annotated[int, typer.Option(min=1, help="rows per model call")] = 10_000,
) -> None:
    """Batch scoring: every input row with label, confidence and class probabilities, checked
    like a request to the server (a bad row names its column and index). Read and written
    chunk by chunk: a file larger than memory is fine."""
    from mlship.serving.batch import score_file

    settings = _settings()
    started = time.perf_counter()

    def progress(rows: int) -> None:
        rate = rows / max(time.perf_counter() - started, 1e-9)
        _note(f"{rows:,} rows scored ({rate:,.0f} rows/s)")

    with stage("score"):
        done = score_file(model, settings.model_name, input_path, output_path, chunk_rows, progress)
    console.print(f"  {done.rows} rows scored by {done.model} v{done.version} -> {output_path}")


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
    (categorical) and PSI, judged by params.yaml `monitor`. Exit 1 on drift."""
    from mlship.stages import monitor

    params = _params(params_file)
    settings = _settings()
    with stage("drift"):
        verdict = monitor.drift_check(params, settings, reference, current, out, model)
        if verdict.report.drifted:
            raise CheckError(f"{verdict.report.details()}\nreport: {verdict.written[2]}")
    console.print(f"  {verdict.report.summary}; report: {verdict.written[2]}")


@app.command()
def monitor(
    live: Annotated[
        str | None,
        typer.Option(help="the server's sample folder; default: MLSHIP_MONITOR_SINK"),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(
            help="what the live model was trained on: a model directory or models:/NAME@ALIAS;"
            " default: models:/<MLSHIP_MODEL_NAME>@champion"
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="where the reports go")] = Path("reports/monitor"),
    params_file: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Should the model be retrained? Drift of the sampled live inputs and answers, and live
    accuracy (or RMSE) from feedback against params.yaml `monitor`. Exit 1 when either
    fails: the scheduled job then retrains through the gated delivery."""
    from mlship.stages import monitor as watching

    params = _params(params_file)
    settings = _settings()
    where = live or settings.monitor_sink
    if where is None:
        message = "give --live or set MLSHIP_MONITOR_SINK (the folder the server samples to)"
        _fail(InputError(f"monitor: {message}"), InputError.exit_code)
    trained_on = reference or f"models:/{settings.model_name}@champion"
    with stage("monitor"):
        found = watching.monitor(params, settings, trained_on, where, out)
        console.print(f"  drift: {found.drift.report.summary}")
        console.print(f"  live quality: {found.quality_line}")
        if found.retrain:
            raise CheckError(f"retrain: {found.reason}; reports under {out}")


# --- shipping -----------------------------------------------------------------------------

image_app = typer.Typer(help="Build and push the serving image (Docker engine required).")
app.add_typer(image_app, name="image")


@image_app.command("build")
def image_build(
    model_dir: Annotated[Path, typer.Option(help="the model directory to bake in")] = Path(
        "models"
    ),
    from_registry: Annotated[
        str | None, typer.Option(help="bake the registry's @ALIAS instead (e.g. candidate)")
    ] = None,
    dockerfile: Annotated[Path, typer.Option(help="the Dockerfile")] = Path("Dockerfile"),
    skip_without_engine: Annotated[
        bool, typer.Option(help="exit 0, saying why, when no Docker engine is reachable")
    ] = False,
    dvc_file: DvcFileOption = DEFAULT_DVC_FILE,
) -> None:
    """Build <registry>/<name>:<gitsha>-m<version> and :<gitsha> with OCI labels."""
    from mlship.stages import ship

    settings = _settings()
    paths = _paths(dvc_file)
    try:
        engine = ship.connect_engine()
    except ServiceError as error:
        if not skip_without_engine:
            _fail(error, error.exit_code)
        console.print(f"[yellow]image step not run:[/] {escape(str(error))}", soft_wrap=True)
        return
    with stage("image build"):
        built = ship.image_build(
            engine, settings, paths, dvc_file, model_dir, dockerfile, from_registry, _note
        )
    console.print(f"  {built.reference} ({built.size_bytes / 1e6:.0f} MB) -> {paths.image_json}")


@image_app.command("push")
def image_push(dvc_file: DvcFileOption = DEFAULT_DVC_FILE) -> None:
    """Push the image recorded by `mlship image build` to the registry, with its SBOM."""
    from mlship.stages import ship

    paths = _paths(dvc_file)
    with stage("image push"):
        pushed = ship.image_push(_settings(), paths, _note)
    console.print(f"  pushed {', '.join(pushed.references)} ({pushed.digest})")
    console.print(f"  SBOM {paths.sbom} (sha256 {pushed.sbom_sha256}) -> {pushed.sbom_reference}")
    if pushed.vulnerabilities is not None:
        console.print(
            f"  no fixable vulnerability at the scanned severities ({paths.vulnerabilities})"
        )


@app.command()
def loadtest(
    url: Annotated[str | None, typer.Option(help="load-test this running server")] = None,
    target: Annotated[
        LoadTarget, typer.Option(help="what to start when no --url is given")
    ] = LoadTarget.auto,
    model_dir: Annotated[Path, typer.Option(help="the model for --target local")] = Path("models"),
    dvc_file: DvcFileOption = DEFAULT_DVC_FILE,
    params_file: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Locust for a bounded time; exit 1 when p95, p99 or the failure ratio break the budget.

    auto: the image recorded by `mlship image build` when a Docker engine can run it,
    otherwise a local `mlship serve`, saying plainly why.
    """
    from mlship.stages import ship

    params = _params(params_file)
    paths = _paths(dvc_file)
    with stage("loadtest"):
        result = ship.run_loadtest(params, paths, model_dir, url, target)
        if result.fallback:
            console.print(f"  [yellow]image step not run: {escape(result.fallback)}; "
                          "load-tested a local server instead[/]")  # fmt: skip
        if not result.passed:
            breaches = "; ".join(f"{c.name}: {c.detail}" for c in result.criteria if not c.passed)
            raise CheckError(f"load test over budget: {breaches}\nreport: {paths.loadtest_md}")
    s = result.summary
    console.print(
        f"  {s['requests']:.0f} requests, {s['rps']:.0f} req/s, p95 {s['p95_ms']:.0f} ms, "
        f"p99 {s['p99_ms']:.0f} ms against {result.target}"
    )


@app.command()
def deploy(
    env: Annotated[Environment, typer.Option("--env", help="where to deploy")],
    image_ref: Annotated[
        str | None, typer.Option("--image", help="default: the image `mlship image push` pushed")
    ] = None,
    timeout: Annotated[int, typer.Option(min=10, help="rollout timeout, seconds")] = 300,
    namespace: Annotated[str | None, typer.Option(help="default: mlship-<env>")] = None,
    canary: Annotated[
        bool, typer.Option("--canary", help="step Istio weights 10/50/100 with Prometheus checks")
    ] = False,
    prometheus_url: Annotated[
        str | None, typer.Option(help="Prometheus query API (default: $MLSHIP_PROMETHEUS_URL)")
    ] = None,
    settle_seconds: Annotated[
        float, typer.Option(min=0, help="canary: wait this long at each weight before judging")
    ] = 60.0,
    dvc_file: DvcFileOption = DEFAULT_DVC_FILE,
    params_file: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """kubectl set image, rollout status, smoke test through the Service, and rollout undo
    on any failure; or, with --canary, a canary stepped 10 -> 50 -> 100% of traffic whose
    error ratio and p99 (the loadtest budget in params.yaml) are checked in Prometheus
    between steps. Exit 0 deployed, 1 failed (rolled back), 2 bad input."""
    from mlship.stages import ship

    settings = _settings()
    paths = _paths(dvc_file)
    options = None
    if canary:
        url = prometheus_url or settings.prometheus_url
        if not url:
            _fail(InputError("--canary needs --prometheus-url or MLSHIP_PROMETHEUS_URL"), 2)
        options = ship.CanaryOptions(url, settle_seconds)
    with stage(f"deploy {env.value}"):
        report = ship.deploy(
            _params(params_file), settings, paths, env, image_ref,
            timeout, namespace, options,
        )  # fmt: skip
    if report.expected_version == "local":
        console.print("  (a local model: nothing to record in the registry)")
    console.print(
        f"  {env.value}: {report.image} is serving model version {report.expected_version}"
    )


# --- Cloud Build --------------------------------------------------------------------------

cloudbuild_app = typer.Typer(
    help="Drive Google Cloud Build: run a trigger, list and approve builds awaiting approval."
)
app.add_typer(cloudbuild_app, name="cloudbuild")


@cloudbuild_app.command("submit")
def cloudbuild_submit(
    trigger: Annotated[str, typer.Option(help="the trigger's name or id")],
    branch: Annotated[str | None, typer.Option(help="build this branch")] = None,
    sha: Annotated[str | None, typer.Option(help="build this commit")] = None,
    substitution: Annotated[list[str] | None, typer.Option(help="_KEY=value, repeatable")] = None,
) -> None:
    """Run a build trigger; prints the build id (stdout) and where to follow it. A trigger
    with approvalConfig starts a build that waits for `mlship cloudbuild approve`."""
    from mlship import cloudbuild

    settings = _settings()
    with stage("cloudbuild submit"):
        substitutions = cloudbuild.parse_substitutions(substitution or [])
        api, where = cloudbuild.connect(settings)
        build = cloudbuild.run_trigger(
            api, where, trigger, branch=branch, sha=sha, substitutions=substitutions
        )
    waiting = " (waiting for approval)" if build.approval.state.name == "PENDING" else ""
    console.print(f"  build {build.id}{waiting}: {where.console_url(build.id)}", soft_wrap=True)
    typer.echo(build.id)


@cloudbuild_app.command("pending")
def cloudbuild_pending() -> None:
    """List the builds waiting for approval."""
    from mlship import cloudbuild

    settings = _settings()
    with stage("cloudbuild pending"):
        api, where = cloudbuild.connect(settings)
        builds = cloudbuild.awaiting_approval(api, where)
    for build in builds:
        trigger = build.substitutions.get("TRIGGER_NAME", build.build_trigger_id)
        typer.echo(f"{build.id}\t{trigger}\t{build.substitutions.get('_RELEASE_SHA', '')}")
    console.print(f"  {len(builds)} build(s) waiting for approval")


@cloudbuild_app.command("approve")
def cloudbuild_approve(
    build_id: Annotated[str, typer.Argument(help="the build waiting for approval")],
    comment: Annotated[str, typer.Option(help="recorded with the decision")] = "",
    reject: Annotated[bool, typer.Option("--reject", help="reject instead of approve")] = False,
) -> None:
    """Approve (or --reject) a build that waits for approval."""
    from mlship import cloudbuild

    settings = _settings()
    with stage("cloudbuild approve"):
        api, where = cloudbuild.connect(settings)
        cloudbuild.decide(api, where, build_id, approve=not reject, comment=comment)
    console.print(f"  build {build_id} {'rejected' if reject else 'approved'}")
