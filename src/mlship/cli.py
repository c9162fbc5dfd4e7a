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
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from mlship.config import BehaviourParams, Params, Settings, load_params
from mlship.errors import CheckError, InputError

if TYPE_CHECKING:  # heavy imports stay out of start-up
    import pandas as pd
    from google.cloud.devtools.cloudbuild_v1 import CloudBuildClient
    from sklearn.pipeline import Pipeline

    from mlship.cloudbuild import Location
    from mlship.gate import Criterion

app = typer.Typer(
    help="mlship: ingest -> validate -> train -> evaluate (DVC, MLflow) -> gate -> register "
    "-> image -> loadtest -> promote; and serve.",
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
    import os

    # MLflow's download progress bars would flood CI logs
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("httpx").setLevel(logging.WARNING)
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
    from mlship.data import frame_digest, select_columns
    from mlship.features import feature_frame

    params = _params(params_file)
    settings = _settings()
    with stage("train"):
        frame = select_columns(_read_split(train_data), params.data, str(train_data))
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
        experiment_id, run_id, model_uri = registry.log_training(
            settings, card["params"], card, pipeline, example
        )
        card["mlflow"] = {
            "experiment_id": experiment_id,
            "run_id": run_id,
            "model_uri": model_uri,
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
    from mlship.data import select_columns

    params = _params(params_file)
    settings = _settings()
    with stage("evaluate"):
        pipeline = artifacts.load_model(model_dir)
        card = artifacts.load_card(model_dir)
        frame = select_columns(_read_split(test), params.data, str(test))
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


DvcFileOption = Annotated[
    Path, typer.Option("--dvc-file", help="dvc.yaml, whose `vars` declare the artifact paths")
]
DEFAULT_DVC_FILE = Path("dvc.yaml")


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
    import os

    from mlship import github, report

    with stage("comment"):
        paths = report.pipeline_paths(dvc_file)
        page = report.run_markdown(paths, _metrics_diff(base_ref), base_ref)
        if os.environ.get("GITHUB_ACTIONS") != "true":
            typer.echo(page)
            return
        summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary_file:
            with Path(summary_file).open("a", encoding="utf-8") as out:
                out.write(page + "\n")
        if summary_only:
            return
        run = github.Run.from_env(os.environ)
        if run.pull_request is None:
            console.print("  not a pull request: the job summary only")
            return
        console.print(f"  pull request comment: {github.upsert_comment(run, page)}")


def _metrics_diff(base_ref: str) -> str | None:
    """`dvc metrics diff` against the base ref as a Markdown table; None without one."""
    import subprocess

    ref = _git_ref(base_ref)
    if ref is None:
        return None
    diff = subprocess.run(
        [sys.executable, "-m", "dvc", "metrics", "diff", "--md", "--all", "--precision", "4", ref],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return diff.stdout if diff.returncode == 0 and diff.stdout.strip() else None


def _sha256(path: Path) -> str:
    import hashlib

    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError as error:
        raise InputError(f"{path}: not found") from error


def _stale_stages(dvc_file: Path) -> dict[str, Any]:
    """Stages whose code, params, data or outputs differ from dvc.lock (empty: fresh)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(dvc_file.resolve().parent)) as repo:
            status: dict[str, Any] = repo.status()
    except DvcException as error:
        raise InputError(f"{dvc_file}: cannot read the pipeline state: {error}") from error
    return status


def _git_ref(ref: str) -> str | None:
    """`ref` itself, or `origin/<ref>` where CI checkouts have only remote-tracking branches."""
    import subprocess

    for candidate in (ref, f"origin/{ref}"):
        found = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}"],
            capture_output=True, check=False,
        )  # fmt: skip
        if found.returncode == 0:
            return candidate
    return None


def _base_params(base_ref: str, params_file: Path) -> dict[str, Any] | None:
    import subprocess

    import yaml

    ref = _git_ref(base_ref)
    if ref is None:
        return None
    shown = subprocess.run(
        ["git", "show", f"{ref}:{params_file.as_posix()}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if shown.returncode != 0:
        return None
    base = yaml.safe_load(shown.stdout)
    return base if isinstance(base, dict) else None


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
    import pandas as pd
    import yaml

    from mlship import artifacts, files, gate_report, registry
    from mlship import gate as gating
    from mlship.features import feature_frame
    from mlship.report import pipeline_paths

    params = _params(params_file)
    settings = _settings()
    with stage("gate"):
        paths = pipeline_paths(dvc_file)
        stale = _stale_stages(dvc_file)
        if stale:
            raise InputError(
                "the evaluation is stale: these stages differ from dvc.lock: "
                + ", ".join(sorted(stale))
                + "; run `dvc repro` first"
            )
        metrics = files.read_json(paths["metrics"])
        card = artifacts.load_card(paths["model_dir"])
        run_id = card.get("mlflow", {}).get("run_id")
        if not run_id:
            raise InputError(f"{paths['model_dir']}: the model card has no MLflow run id")
        criteria = gating.threshold_criteria(
            metrics, files.read_json(paths["latency"]), params.gate
        )
        test = _read_split(paths["test"])
        rows = pd.read_csv(paths["predictions"], dtype={"actual": str, "predicted": str})
        if len(rows) != len(test):
            raise InputError(
                f"{paths['predictions']}: {len(rows)} rows, but the test split has {len(test)}"
            )
        behaviour = params.gate.behaviour
        if behaviour is not None:
            pipeline = artifacts.load_model(paths["model_dir"])
            criteria += _behaviour(pipeline, test, params, behaviour)
        champion = registry.alias_version(settings, registry.CHAMPION)
        if champion is not None:
            model = registry.load_version_model(settings, str(champion.version))
            try:
                champion_predicted = model.predict(feature_frame(test, params.data))
            except (KeyError, ValueError) as error:
                raise InputError(
                    f"champion v{champion.version} cannot score this test set "
                    f"(were the feature columns changed?): {error}"
                ) from error
            criteria += gating.champion_criteria(
                rows["actual"].to_numpy(), rows["predicted"].to_numpy(),
                champion_predicted.astype(str), [str(c) for c in card["classes"]],
                params.gate, str(champion.version),
            )  # fmt: skip
        criteria.append(gating.contract_criterion(files.read_json(paths["contract_json"])))

        context = {
            "candidate_run_id": run_id,
            "git_sha": card["git"]["sha"],
            "champion_version": None if champion is None else str(champion.version),
            "dvc_lock_sha256": _sha256(dvc_file.with_suffix(".lock")),
            "model_sha256": _sha256(paths["model_dir"] / artifacts.MODEL_FILE),
            "base_ref": base_ref,
            "judged_at": artifacts.utc_now(),
        }
        base = _base_params(base_ref, params_file)
        current = yaml.safe_load(params_file.read_text(encoding="utf-8"))
        diff = None if base is None else gate_report.params_diff(base, current)
        files.write_json(paths["gate_json"], gate_report.gate_json(criteria, context))
        files.write_text(
            paths["gate_md"],
            gate_report.gate_markdown(criteria, metrics["confusion_matrix"], diff, context),
        )
        files.write_with(paths["gate_junit"], lambda temp: gate_report.gate_junit(criteria, temp))
        failed = [c for c in criteria if not c.passed]
        if failed:
            raise CheckError(
                f"gate FAILED on {len(failed)} of {len(criteria)} criteria:\n"
                + "\n".join(f"  {c.name}: {c.detail}" for c in failed)
                + f"\nreport: {paths['gate_md']}"
            )
    note = "" if champion is not None else " (no champion yet: judged without a comparison)"
    console.print(f"  {len(criteria)} criteria passed{note}; report: {paths['gate_md']}")


def _behaviour(
    pipeline: Pipeline, test: pd.DataFrame, params: Params, behaviour: BehaviourParams
) -> list[Criterion]:
    """Predict functions over real test rows (invariance) and bare texts (functionality)."""
    import pandas as pd

    from mlship import gate as gating
    from mlship.features import feature_frame

    column = behaviour.column
    limit = behaviour.invariance.rows if behaviour.invariance else 0
    base_rows = test.head(limit).reset_index(drop=True)

    def predict(texts: list[str]) -> list[str]:
        if len(texts) == len(base_rows):
            frame = base_rows.assign(**{column: texts})
        else:
            frame = pd.DataFrame({c: [None] * len(texts) for c in params.data.feature_columns})
            frame[column] = texts
        return [str(label) for label in pipeline.predict(feature_frame(frame, params.data))]

    texts = [str(t) for t in base_rows[column]]
    return gating.behaviour_criteria(predict, texts, behaviour)


def _require_gate_pass(dvc_file: Path) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """The gate report, the model card and the paths, once the report is a fresh pass."""
    from mlship import artifacts, files
    from mlship.report import pipeline_paths

    paths = pipeline_paths(dvc_file)
    report = files.read_json(paths["gate_json"])
    card = artifacts.load_card(paths["model_dir"])
    if report.get("candidate_run_id") != card.get("mlflow", {}).get("run_id"):
        raise InputError(
            f"{paths['gate_json']} judged run {report.get('candidate_run_id')}, but the model "
            f"in {paths['model_dir']} is run {card.get('mlflow', {}).get('run_id')}; "
            "run `mlship gate` again"
        )
    if report.get("dvc_lock_sha256") != _sha256(dvc_file.with_suffix(".lock")):
        raise InputError(f"{paths['gate_json']} is stale: dvc.lock changed since the gate ran")
    if report.get("passed") is not True:
        raise CheckError(
            f"the gate did not pass ({', '.join(report.get('failed', []))}); not registering"
        )
    return report, card, paths


@app.command()
def register(dvc_file: DvcFileOption = DEFAULT_DVC_FILE) -> None:
    """Register the gated model version with provenance tags and alias `candidate`."""
    import mlflow

    from mlship import files, registry

    settings = _settings()
    with stage("register"):
        report, card, paths = _require_gate_pass(dvc_file)
        run_id = card["mlflow"]["run_id"]
        registry.start_tracking(settings)
        with mlflow.start_run(run_id=run_id):
            for key in ("gate_json", "gate_md", "gate_junit"):
                mlflow.log_artifact(str(paths[key]), artifact_path="gate")
        ingest = files.read_json(paths["ingest_report"])
        version = registry.register(
            settings,
            run_id,
            card["mlflow"]["model_uri"],
            {
                "mlship.git_sha": card["git"]["sha"],
                "mlship.dvc_lock_sha256": report["dvc_lock_sha256"],
                "mlship.model_sha256": report["model_sha256"],
                "mlship.data_train_digest": ingest["digest"]["train"],
                "mlship.data_test_digest": ingest["digest"]["test"],
                "mlship.gate": "passed",
                "mlship.gate_report": f"runs:/{run_id}/gate/gate.md",
                "mlship.gate_champion": str(report.get("champion_version") or "none"),
            },
        )
    console.print(f"  {settings.model_name} version {version} is now @{registry.CANDIDATE}")


@app.command()
def promote(
    version: Annotated[
        str | None, typer.Option(help="the version to promote; default: @candidate")
    ] = None,
    approver: Annotated[
        str | None, typer.Option(help="who approved; default: read from the CI's variables")
    ] = None,
    rollback: Annotated[
        bool, typer.Option("--rollback", help="move @champion back to the previous version")
    ] = False,
) -> None:
    """Move alias `champion`, recording who approved it, through which CI, and when."""
    import os

    from mlship import artifacts, registry
    from mlship.approval import approval_from_env

    settings = _settings()
    with stage("promote"):
        recorded = approver or _recorded_approver(settings)
        approval = approval_from_env(os.environ, recorded, artifacts.utc_now())
        current = registry.alias_version(settings, registry.CHAMPION)
        if rollback:
            if version is not None:
                raise InputError(
                    "--rollback moves to the recorded previous version; drop --version"
                )
            if current is None:
                raise InputError(f"{settings.model_name} has no @champion to roll back")
            target = registry.version_tags(settings, str(current.version)).get(
                "mlship.previous_champion", "none"
            )
            if target == "none":
                raise InputError(
                    f"version {current.version} records no previous champion to roll back to"
                )
            tags = {
                **approval.tags("mlship.rolled_back"),
                "mlship.rolled_back_from": str(current.version),
            }
        else:
            if version is None:
                candidate = registry.alias_version(settings, registry.CANDIDATE)
                if candidate is None:
                    raise InputError(
                        f"{settings.model_name} has no @candidate; run `mlship register`"
                    )
                version = str(candidate.version)
            target = version
            if registry.version_tags(settings, target).get("mlship.gate") != "passed":
                raise CheckError(f"version {target} has not passed the gate; not promoting")
            if current is not None and str(current.version) == target:
                raise InputError(f"version {target} is already @champion")
            tags = {
                **approval.tags(),
                "mlship.previous_champion": "none" if current is None else str(current.version),
            }
        registry.move_champion(settings, target, tags)
    verb = "rolled back" if rollback else "promoted"
    console.print(
        f"  {verb}: {settings.model_name} version {target} is @{registry.CHAMPION} "
        f"(approved by {approval.approver} via {approval.via})"
    )


def _recorded_approver(settings: Settings) -> str | None:
    """Who approved this run, from the CI's own approval record where it keeps one: the
    reviewer of the GitHub `production` environment, the approver of the Cloud Build build."""
    import os

    from mlship import cloudbuild, github

    env = os.environ
    if env.get("GITHUB_ACTIONS") == "true" and env.get("GITHUB_TOKEN"):
        return github.environment_approver(github.Run.from_env(env), github.PRODUCTION)
    if env.get("MLSHIP_CI") == "cloud-build" and env.get("BUILD_ID") and settings.gcp_project:
        where = cloudbuild.Location(settings.gcp_project, settings.gcp_region)
        return cloudbuild.approver(
            cloudbuild.client(settings.cloudbuild_endpoint), where, env["BUILD_ID"]
        )
    return None


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
        str, typer.Option(help="shadow: score and log only; split: answer a share of requests")
    ] = "shadow",
    challenger_weight: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="share of requests in split mode")
    ] = 0.1,
) -> None:
    """Serve the model: /predict, /invocations (MLflow), /v2 (Open Inference Protocol),
    /metrics, /model, /health and /ready."""
    from mlship.serving.app import Challenger
    from mlship.serving.runner import ServeOptions
    from mlship.serving.runner import serve as run

    if challenger_mode not in ("shadow", "split"):
        _fail(InputError(f"--challenger-mode must be shadow or split, not {challenger_mode!r}"), 2)
    second = (
        Challenger(challenger, "shadow" if challenger_mode == "shadow" else "split",
                   challenger_weight)
        if challenger else None
    )  # fmt: skip
    if not model.startswith("models:/") and not Path(model).is_dir():
        _fail(InputError(f"{model}: no such model directory (or give a models:/ URI)"), 2)
    try:
        run(ServeOptions(model, host, port, workers, second), _settings())
    except OSError as error:
        _fail(InputError(f"cannot listen on {host}:{port}: {error.strerror}"), 2)


image_app = typer.Typer(help="Build and push the serving image (Docker engine required).")
app.add_typer(image_app, name="image")


def _stage_registry_model(settings: Settings, alias: str, folder: Path) -> dict[str, Any]:
    """The registry's @alias version as a model directory; returns its card."""
    from mlship import artifacts
    from mlship.serving.model import load_registry

    served = load_registry(settings.tracking_uri, f"models:/{settings.model_name}@{alias}")
    card = {
        **served.card,
        "registry": {"name": served.name, "version": served.version, "alias": alias},
    }
    card["mlflow"] = {**card.get("mlflow", {}), "tracking_uri": settings.tracking_uri}
    artifacts.save_model(served.pipeline, card, folder)
    return card


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
    import tempfile

    from mlship import artifacts, files, image
    from mlship.report import pipeline_paths

    settings = _settings()
    paths = pipeline_paths(dvc_file)
    try:
        client = image.engine()
    except InputError as error:
        if not skip_without_engine:
            _fail(error, 2)
        console.print(f"[yellow]image step not run:[/] {escape(str(error))}", soft_wrap=True)
        return
    with stage("image build"):
        with tempfile.TemporaryDirectory(prefix="mlship-image-") as scratch:
            context = Path(scratch)
            metrics: dict[str, Any] | None = None
            if from_registry:
                staged = context / "registry-model"
                card = _stage_registry_model(settings, from_registry, staged)
                model_dir, metrics = staged, card.get("metrics")
            else:
                card = artifacts.load_card(model_dir)
                artifacts.load_model(model_dir)  # refuse to bake a model that cannot load
                if paths["metrics"].is_file():
                    metrics = files.read_json(paths["metrics"])
                card = _with_registered_version(settings, card)
            plan = image.plan(
                settings.registry, settings.image_name, settings.model_name,
                artifacts.git_state().sha, card, _lock_digest(dvc_file), _git_remote(),
                artifacts.utc_now(),
                settings.base_image,
            )  # fmt: skip
            wheels = Path.home() / ".cache" / "mlship" / "wheels"
            console.print("  downloading and hash-checking wheels ...")
            image.download_wheels(Path(image.SERVE_LOCK), wheels, Path.cwd())
            build_context = context / "context"
            build_context.mkdir()
            image.stage_context(
                build_context, dockerfile, Path(image.SERVE_LOCK), model_dir, wheels, card,
                metrics,
            )  # fmt: skip
            image_id = image.build(client, build_context, plan, _docker_progress)
        size = client.images.get(image_id).attrs.get("Size", 0)
        files.write_json(
            paths["image_json"],
            {"id": image_id, "references": plan.references, "labels": plan.build_args,
             "size_bytes": size, "pushed": False},
        )  # fmt: skip
    console.print(f"  {plan.references[0]} ({size / 1e6:.0f} MB) -> {paths['image_json']}")


def _docker_progress(line: str) -> None:
    console.print(f"  [dim]{escape(line)}[/]", highlight=False)


def _with_registered_version(settings: Settings, card: dict[str, Any]) -> dict[str, Any]:
    """The card with the registry version `mlship register` gave this model's run, so the
    image tag, its labels and the server's /model name that version."""
    from mlship import registry

    run_id = card.get("mlflow", {}).get("run_id")
    version = registry.registered_version(settings, str(run_id)) if run_id else None
    if version is None:
        console.print("  this model is not registered (`mlship register`): tagged as local")
        return card
    return {**card, "registry": {"name": settings.model_name, "version": version}}


def _lock_digest(dvc_file: Path) -> str:
    lock = dvc_file.with_suffix(".lock")
    return _sha256(lock) if lock.is_file() else ""


def _git_remote() -> str:
    import subprocess

    done = subprocess.run(["git", "config", "--get", "remote.origin.url"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    return done.stdout.strip()


@image_app.command("push")
def image_push(dvc_file: DvcFileOption = DEFAULT_DVC_FILE) -> None:
    """Push the image recorded by `mlship image build` to the registry."""
    from mlship import files, image
    from mlship.report import pipeline_paths

    paths = pipeline_paths(dvc_file)
    with stage("image push"):
        built = files.read_json(paths["image_json"])
        client = image.engine()
        digest = image.push(client, built["references"], _docker_progress)
        files.write_json(paths["image_json"], {**built, "pushed": True, "digest": digest})
    console.print(f"  pushed {', '.join(built['references'])} ({digest})")


@app.command()
def loadtest(
    url: Annotated[str | None, typer.Option(help="load-test this running server")] = None,
    target: Annotated[
        str, typer.Option(help="auto | image | local: what to start when no --url is given")
    ] = "auto",
    model_dir: Annotated[Path, typer.Option(help="the model for --target local")] = Path("models"),
    dvc_file: DvcFileOption = DEFAULT_DVC_FILE,
    params_file: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Locust for a bounded time; exit 1 when p95, p99 or the failure ratio break the budget.

    auto: the image recorded by `mlship image build` when a Docker engine can run it,
    otherwise a local `mlship serve`, saying plainly why.
    """
    import contextlib
    import json
    import subprocess
    import sys
    import tempfile

    from mlship import artifacts, files, gate_report, image
    from mlship import loadtest as locust
    from mlship.report import pipeline_paths
    from mlship.serving.model import Features

    if target not in ("auto", "image", "local"):
        _fail(InputError(f"--target must be auto, image or local, not {target!r}"), 2)
    params = _params(params_file)
    paths = pipeline_paths(dvc_file)
    described = url or ""
    with stage("loadtest"), contextlib.ExitStack() as cleanup:
        if url is None and target in ("auto", "image"):
            try:
                client, reference = _image_to_load_test(paths["image_json"], model_dir)
            except InputError as reason:
                if target == "image":
                    raise InputError(f"cannot load-test the image: {reason}") from reason
                console.print(f"  [yellow]image step not run: {reason}; "
                              "load-testing a local server instead[/]")  # fmt: skip
            else:
                port = image.free_port()
                container = image.run_container(client, reference, port)
                cleanup.callback(lambda: container.remove(force=True))
                url = f"http://127.0.0.1:{port}"
                image.wait_ready(f"{url}/ready", 120, lambda: image.container_alive(container))
                described = f"image {reference}"
        if url is None:
            port = image.free_port()
            server = subprocess.Popen(
                [sys.executable, "-m", "mlship", "serve", "--model", str(model_dir),
                 "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            cleanup.callback(server.wait, 30)
            cleanup.callback(server.terminate)
            url = f"http://127.0.0.1:{port}"
            image.wait_ready(f"{url}/ready", 120, lambda: server.poll() is None)
            described = f"local server ({model_dir})"
        features = Features.from_card(artifacts.load_card(model_dir))
        scratch = Path(cleanup.enter_context(tempfile.TemporaryDirectory()))
        rows_file = scratch / "rows.json"
        rows_file.write_text(
            json.dumps(locust.request_rows(_read_split(paths["test"]), features.columns))
        )
        paths["loadtest_html"].parent.mkdir(parents=True, exist_ok=True)
        stats = locust.run_locust(url, rows_file, params.loadtest, scratch, paths["loadtest_html"])
        summary = locust.aggregate(stats)
        criteria = locust.budget_criteria(summary, params.loadtest)
        files.write_json(paths["loadtest_json"], {
            "passed": all(c.passed for c in criteria), "target": described, "summary": summary,
            "budget": params.loadtest.model_dump(), "criteria": [c.__dict__ for c in criteria],
        })  # fmt: skip
        files.write_text(paths["loadtest_md"], locust.markdown(summary, criteria, described))
        files.write_with(
            paths["loadtest_junit"],
            lambda temp: gate_report.gate_junit(criteria, temp, "mlship.loadtest"),
        )
        failed = [c for c in criteria if not c.passed]
        if failed:
            breaches = "; ".join(f"{c.name}: {c.detail}" for c in failed)
            raise CheckError(f"load test over budget: {breaches}\nreport: {paths['loadtest_md']}")
    console.print(
        f"  {summary['requests']:.0f} requests, {summary['rps']:.0f} req/s, p95 "
        f"{summary['p95_ms']:.0f} ms, p99 {summary['p99_ms']:.0f} ms against {described}"
    )


def _image_to_load_test(image_json: Path, model_dir: Path) -> tuple[Any, str]:
    """The Docker engine and the built image of this model; InputError says why not."""
    from mlship import artifacts, files, image

    if not image_json.is_file():
        raise InputError(f"no image built ({image_json} is missing)")
    built = files.read_json(image_json)
    run_id = artifacts.load_card(model_dir).get("mlflow", {}).get("run_id", "")
    if built.get("labels", {}).get("RUN_ID") != run_id:
        raise InputError(f"the image in {image_json} holds another model than {model_dir}")
    client = image.engine()
    reference = str(built["references"][0])
    try:
        client.images.get(reference)
    except Exception as error:
        raise InputError(f"{reference} is not in the local Docker engine") from error
    return client, reference


@app.command()
def deploy(
    env: Annotated[str, typer.Option("--env", help="staging or production")],
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
    from mlship import deploy as delivery
    from mlship import files, loadtest
    from mlship.artifacts import load_card
    from mlship.report import deploy_report, pipeline_paths
    from mlship.serving.model import Features

    if env not in ("staging", "production"):
        _fail(InputError(f"--env must be staging or production, not {env!r}"), 2)
    paths = pipeline_paths(dvc_file)
    with stage(f"deploy {env}"):
        if image_ref is None:
            built = files.read_json(paths["image_json"])
            if not built.get("pushed"):
                raise InputError(
                    f"{paths['image_json']}: the image was not pushed; run `mlship image push`"
                )
            image_ref = str(built["references"][0])
        version = delivery.expected_version(image_ref)
        if version is None:
            raise InputError(
                f"{image_ref}: expected a tag <gitsha>-m<version> from `mlship image build`"
            )
        features = Features.from_card(load_card(paths["model_dir"]))
        row = loadtest.request_rows(_read_split(paths["test"]), features.columns, limit=1)[0]
        target = delivery.Target(namespace or f"mlship-{env}")
        kubectl = delivery.Kubectl(target.namespace)
        if canary:
            url = prometheus_url or _settings().prometheus_url
            if not url:
                raise InputError("--canary needs --prometheus-url or MLSHIP_PROMETHEUS_URL")
            budget = _params(params_file).loadtest
            report = delivery.canary_deploy(
                kubectl, target, env, image_ref, version, delivery.Prometheus(url),
                delivery.CanaryBudget(budget.max_failure_ratio, budget.max_p99_ms, settle_seconds),
                timeout,
            )  # fmt: skip
        else:
            report = delivery.deploy(kubectl, target, env, image_ref, version, row, timeout)
        out = deploy_report(paths, env)
        files.write_json(out, report.as_json())
        files.write_text(out.with_suffix(".md"), report.markdown())
        if not report.ok:
            failed = "; ".join(f"{s.name}: {s.detail}" for s in report.steps if not s.ok)
            outcome = "rolled back" if report.rolled_back else "NOT rolled back: act now"
            raise CheckError(f"deploy to {env} failed ({outcome}): {failed}")
        _record_deployment(env, image_ref, version)
    console.print(f"  {env}: {image_ref} is serving model version {version}")


def _record_deployment(env: str, image_ref: str, version: str) -> None:
    """Tag the registered model version with where it now runs (skipped for local models)."""
    from mlship import artifacts, registry

    if version == "local":
        console.print("  (a local model: nothing to record in the registry)")
        return
    settings = _settings()
    registry.tag_version(settings, version, {
        f"mlship.deployed.{env}": image_ref, f"mlship.deployed.{env}.at": artifacts.utc_now(),
    })  # fmt: skip


@app.command()
def score(
    input_path: Annotated[str, typer.Option("--input", help="a .csv or .parquet of feature rows")],
    output_path: Annotated[Path, typer.Option("--output", help="where the scored rows go (.csv)")],
    model: Annotated[Path, typer.Option(help="the model directory")] = Path("models"),
    chunk_rows: Annotated[int, typer.Option(min=1, help="rows per model call")] = 10_000,
) -> None:
    """Batch scoring: every input row with label, confidence and class probabilities, checked
    like a request to the server (a bad row names its column and index)."""
    import pandas as pd

    from mlship import files
    from mlship.serving.model import load_directory
    from mlship.serving.protocols import BadRequestError, check_columns

    settings = _settings()
    with stage("score"):
        served = load_directory(model, settings.model_name)
        frame = files.read_table(input_path)
        missing = [c for c in served.features.text if c not in frame.columns]
        if missing:
            raise InputError(f"{input_path}: missing feature column(s) {missing}")
        chunks = []
        for start in range(0, len(frame), chunk_rows):
            part = frame.iloc[start : start + chunk_rows]
            records = part[[c for c in served.features.columns if c in part.columns]]
            columns = {c: [None if pd.isna(v) else v for v in records[c]] for c in records.columns}
            try:
                check_columns(served.features, columns, f"{input_path} rows {start}+")
            except BadRequestError as error:
                raise InputError(error.message) from error
            probabilities = served.predict_proba(columns)
            scored = pd.DataFrame(probabilities, columns=[f"proba_{c}" for c in served.classes])
            scored.insert(0, "label", [served.classes[i] for i in probabilities.argmax(axis=1)])
            scored.insert(1, "confidence", probabilities.max(axis=1))
            chunks.append(pd.concat([part.reset_index(drop=True), scored], axis=1))
        result = pd.concat(chunks, ignore_index=True)
        files.write_with(output_path, lambda temp: result.to_csv(temp, index=False))
    console.print(
        f"  {len(result)} rows scored by {served.name} v{served.version} -> {output_path}"
    )


cloudbuild_app = typer.Typer(
    help="Drive Google Cloud Build: run a trigger, list and approve builds awaiting approval."
)
app.add_typer(cloudbuild_app, name="cloudbuild")


def _cloudbuild() -> tuple[CloudBuildClient, Location]:
    from mlship import cloudbuild

    settings = _settings()
    if not settings.gcp_project:
        raise InputError("no Google Cloud project: set MLSHIP_GCP_PROJECT")
    where = cloudbuild.Location(settings.gcp_project, settings.gcp_region)
    return cloudbuild.client(settings.cloudbuild_endpoint), where


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

    with stage("cloudbuild submit"):
        substitutions = cloudbuild.parse_substitutions(substitution or [])
        api, where = _cloudbuild()
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

    with stage("cloudbuild pending"):
        api, where = _cloudbuild()
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

    with stage("cloudbuild approve"):
        api, where = _cloudbuild()
        cloudbuild.decide(api, where, build_id, approve=not reject, comment=comment)
    console.print(f"  build {build_id} {'rejected' if reject else 'approved'}")
