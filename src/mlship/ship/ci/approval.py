"""Who approved a promotion, and through which CI: each CI system's adapter (SYSTEMS)
says whether the run is on it, who its approval record or variables name, and the run's
address; off any CI, the local user."""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from dataclasses import dataclass

from mlship.config.settings import Settings
from mlship.errors import InputError
from mlship.ship.ci import cloudbuild, github, jenkins
from mlship.ship.ci.system import CiSystem

SYSTEMS: tuple[CiSystem, ...] = (github.SYSTEM, jenkins.SYSTEM, cloudbuild.SYSTEM)


@dataclass(frozen=True)
class Approval:
    approver: str
    via: str  # a CI system's name, or local
    url: str
    at: str

    def tags(self, prefix: str = "mlship.approved") -> dict[str, str]:
        return {
            f"{prefix}_by": self.approver,
            f"{prefix}_via": self.via,
            f"{prefix}_at": self.at,
            f"{prefix}_url": self.url,
        }


def current_system(env: Mapping[str, str]) -> CiSystem | None:
    return next((system for system in SYSTEMS if system.detect(env)), None)


def approval_from_env(env: Mapping[str, str], approver: str | None, at: str) -> Approval:
    """`approver` when known (read from the CI's approval record); otherwise the one the CI's
    variables name (GitHub: the run's triggering actor; Jenkins: the `input` step's
    submitter, APPROVER; Cloud Build: MLSHIP_APPROVER); off any CI, MLSHIP_APPROVER or the
    local user."""
    system = current_system(env)
    who: str | None
    if system is None:
        who, via, url = approver or env.get("MLSHIP_APPROVER") or getpass.getuser(), "local", ""
    else:
        info = system.run_info(env)
        who, via, url = approver or info.approver, system.name, info.url
    if not who:
        raise InputError(
            f"{via}: cannot tell who approved; pass --approver (or set MLSHIP_APPROVER)"
        )
    return Approval(approver=who, via=via, url=url, at=at)


def recorded_approver(env: Mapping[str, str], settings: Settings) -> str | None:
    """Who approved this run, from the CI's own approval record where it keeps one."""
    system = current_system(env)
    return None if system is None else system.recorded_approver(env, settings)


def approval(env: Mapping[str, str], settings: Settings, approver: str | None, at: str) -> Approval:
    """Who approved, through which CI: `approver` when given, else the CI's own record, else
    its variables (see approval_from_env)."""
    return approval_from_env(env, approver or recorded_approver(env, settings), at)
