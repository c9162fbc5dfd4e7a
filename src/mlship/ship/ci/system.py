"""What every CI system's adapter module provides (github.py, jenkins.py, cloudbuild.py):
which files hold its pipelines, how to read the delivery's steps from one, whether a run is
on it, who approved the run, and where its setup is documented. A new CI system is one
module implementing CiSystem, listed in approval.SYSTEMS.

Reading a pipeline file gives (step name, command) pairs in order; the approval is
("approve", None) wherever the CI holds the run for a person. A `make` call outside a named
step is an error unless it is setup (SETUP_COMMANDS): CI files hold no logic of their own,
so a stray `make` is a step someone forgot to name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mlship.config.settings import Settings
from mlship.errors import CheckError
from mlship.ship.delivery import STEPS, scheduled_steps

STEP_NAMES = {step.name for step in (*STEPS, *scheduled_steps())}
SETUP_COMMANDS = {"make pull"}  # restores a release's pipeline outputs before production
Steps = list[tuple[str, str | None]]


class PipelineError(CheckError):
    """A CI file that does not run the delivery as delivery.py lists it."""


def check_stray_make(where: str, step_id: str | None, command: str) -> None:
    stray = step_id not in STEP_NAMES and command not in SETUP_COMMANDS
    if command.startswith("make ") and stray:
        raise PipelineError(f"{where}: `{command}` runs outside a named step")


@dataclass(frozen=True)
class RunInfo:
    """Who approved a run on this CI system (None: not known from its variables) and the
    run's address."""

    approver: str | None
    url: str


class CiSystem(Protocol):
    name: str  # as recorded on a promotion: github-actions | jenkins | cloud-build
    docs: str  # its setup page under docs/ci/
    pipelines: tuple[str, ...]  # the files (globs) holding its pipelines

    def detect(self, env: Mapping[str, str]) -> bool:
        """Whether this process runs on this CI system."""
        ...

    def run_info(self, env: Mapping[str, str]) -> RunInfo:
        """The approver its variables name, and the run's address."""
        ...

    def recorded_approver(self, env: Mapping[str, str], settings: Settings) -> str | None:
        """The approver its own approval record names (an API call), where it keeps one."""
        ...

    def read_steps(self, path: Path) -> Steps:
        """The delivery's steps a pipeline file runs, in order."""
        ...
