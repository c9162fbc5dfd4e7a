"""What every command shares: the Typer app, the console, the common options, and the
mapping of mlship.errors to exit codes (0 done, 1 a check failed, 2 bad input, 3 a service
did not answer)."""

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
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from mlship.config.params import Params, load_params
from mlship.config.settings import Settings
from mlship.errors import InputError, MlshipError
from mlship.paths import PipelinePaths
from mlship.project import Project

app = typer.Typer(
    help="mlship: ingest -> validate -> train -> evaluate (DVC, MLflow) -> gate -> register "
    "-> image -> loadtest -> deploy -> promote; and serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# soft_wrap: a line longer than the terminal (or 80 columns, in CI logs) is not broken in two,
# so paths and messages stay whole and greppable
console = Console(stderr=True, soft_wrap=True)

ParamsOption = Annotated[
    Path, typer.Option("--params", help="the params file that says what to build")
]
DvcFileOption = Annotated[
    Path, typer.Option("--dvc-file", help="dvc.yaml, whose `vars` declare the artifact paths")
]
DEFAULT_PARAMS = Path("params.yaml")
DEFAULT_DVC_FILE = Path("dvc.yaml")


def fail(error: MlshipError) -> NoReturn:
    """Say what went wrong and exit with the error's code: the one place errors become exit
    codes (mlship.errors has the table)."""
    console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
    raise typer.Exit(error.exit_code)


@contextmanager
def running(name: str) -> Iterator[None]:
    """Run a command's work: show progress, turn an MlshipError into its exit code, report the
    time taken."""
    start = time.perf_counter()
    try:
        with console.status(f"[bold]{name}[/] ..."):
            yield
    except MlshipError as error:
        fail(error)
    console.print(f"[green]✓[/] {name} ({time.perf_counter() - start:.1f} s)")


def note(line: str) -> None:
    console.print(f"  [dim]{escape(line)}[/]", highlight=False)


def env_settings(params: Params | None = None) -> Settings:
    """The environment's settings; with `params`, named after params.yaml's model unless
    MLSHIP_MODEL_NAME names it."""
    try:
        settings = Settings()
    except ValidationError as error:
        fail(InputError(f"environment: {error}"))
    return settings if params is None else settings.named(params)


def read_params(path: Path) -> Params:
    """params.yaml parsed, and what it names by import path checked (exit 2 naming the key)."""
    from mlship.pipeline.importing import check_imports

    try:
        params = load_params(path)
        check_imports(params, path)
        return params
    except InputError as error:
        fail(error)


def read_project(params_file: Path, dvc_file: Path) -> Project:
    """params.yaml, the environment's settings named after its model, and dvc.yaml's paths."""
    params = read_params(params_file)
    return Project(params, env_settings(params), read_paths(dvc_file), params_file, dvc_file)


def read_paths(dvc_file: Path) -> PipelinePaths:
    try:
        return PipelinePaths.read(dvc_file)
    except InputError as error:
        fail(error)


@app.callback()
def main() -> None:
    """Set up logging once per process; nothing happens at import time."""
    # MLflow's download progress bars would flood CI logs
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    level = env_settings().log_level
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    if level != "DEBUG":  # the libraries' notes (creating MLflow's tables, a font cache) are noise
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow sets up its own
        for library in ("httpx", "alembic", "matplotlib", "urllib3"):
            logging.getLogger(library).setLevel(logging.WARNING)
