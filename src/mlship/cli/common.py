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
from rich.console import Console
from rich.markup import escape

from mlship.config import Params, Settings, load_params
from mlship.errors import InputError, MlshipError
from mlship.paths import PipelinePaths

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


def fail(error: Exception, code: int) -> NoReturn:
    console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Run a stage: show progress, map errors to exit codes, report the time taken."""
    start = time.perf_counter()
    try:
        with console.status(f"[bold]{name}[/] ..."):
            yield
    except MlshipError as error:
        fail(error, error.exit_code)
    except ValueError as error:  # a library's complaint about a value we passed on
        fail(InputError(f"{name}: {error}"), InputError.exit_code)
    console.print(f"[green]✓[/] {name} ({time.perf_counter() - start:.1f} s)")


def note(line: str) -> None:
    console.print(f"  [dim]{escape(line)}[/]", highlight=False)


def env_settings(params: Params | None = None) -> Settings:
    """The environment's settings; with `params`, named after params.yaml's model unless
    MLSHIP_MODEL_NAME names it."""
    try:
        settings = Settings()
    except ValueError as error:
        fail(InputError(f"environment: {error}"), InputError.exit_code)
    return settings if params is None else settings.named(params)


def read_params(path: Path) -> Params:
    try:
        return load_params(path)
    except InputError as error:
        fail(error, error.exit_code)


def read_paths(dvc_file: Path) -> PipelinePaths:
    try:
        return PipelinePaths.read(dvc_file)
    except InputError as error:
        fail(error, error.exit_code)


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
