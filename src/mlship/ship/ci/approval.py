"""Who approved a promotion, and through which CI, read from the CI's own variables."""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from dataclasses import dataclass

from mlship.config.settings import Settings
from mlship.errors import InputError


@dataclass(frozen=True)
class Approval:
    approver: str
    via: str  # github-actions | jenkins | cloud-build | local
    url: str
    at: str

    def tags(self, prefix: str = "mlship.approved") -> dict[str, str]:
        return {
            f"{prefix}_by": self.approver,
            f"{prefix}_via": self.via,
            f"{prefix}_at": self.at,
            f"{prefix}_url": self.url,
        }


def approval_from_env(env: Mapping[str, str], approver: str | None, at: str) -> Approval:
    """`approver` when known (the CLI reads it from the CI's approval record: the reviewer
    of the GitHub `production` environment, the Cloud Build build's approver); otherwise
    GitHub Actions: the run's triggering actor; Jenkins: the `input` step's submitter,
    exported as APPROVER (or BUILD_USER_ID); Cloud Build: MLSHIP_APPROVER; elsewhere the
    local user.
    """
    if env.get("GITHUB_ACTIONS") == "true":
        who = approver or env.get("GITHUB_TRIGGERING_ACTOR") or env.get("GITHUB_ACTOR")
        url = "{}/{}/actions/runs/{}".format(
            env.get("GITHUB_SERVER_URL", ""),
            env.get("GITHUB_REPOSITORY", ""),
            env.get("GITHUB_RUN_ID", ""),
        )
        via = "github-actions"
    elif env.get("JENKINS_URL"):
        who = approver or env.get("APPROVER") or env.get("BUILD_USER_ID")
        url, via = env.get("BUILD_URL", ""), "jenkins"
    elif env.get("MLSHIP_CI") == "cloud-build":
        who = approver or env.get("MLSHIP_APPROVER")
        url = "https://console.cloud.google.com/cloud-build/builds/{}?project={}".format(
            env.get("BUILD_ID", ""), env.get("PROJECT_ID", "")
        )
        via = "cloud-build"
    else:
        who = approver or env.get("MLSHIP_APPROVER") or getpass.getuser()
        url, via = "", "local"
    if not who:
        raise InputError(
            f"{via}: cannot tell who approved; pass --approver (or set MLSHIP_APPROVER)"
        )
    return Approval(approver=who, via=via, url=url, at=at)


def recorded_approver(env: Mapping[str, str], settings: Settings) -> str | None:
    """Who approved this run, from the CI's own approval record where it keeps one: the
    reviewer of the GitHub `production` environment, the approver of the Cloud Build build."""
    from mlship.ship.ci import cloudbuild, github

    if env.get("GITHUB_ACTIONS") == "true" and env.get("GITHUB_TOKEN"):
        return github.environment_approver(github.Run.from_env(env), github.PRODUCTION)
    if env.get("MLSHIP_CI") == "cloud-build" and env.get("BUILD_ID") and settings.gcp_project:
        where = cloudbuild.Location(settings.gcp_project, settings.gcp_region)
        return cloudbuild.approver(
            cloudbuild.client(settings.cloudbuild_endpoint), where, env["BUILD_ID"]
        )
    return None


def approval(env: Mapping[str, str], settings: Settings, approver: str | None, at: str) -> Approval:
    """Who approved, through which CI: `approver` when given, else the CI's own record, else
    its variables (see approval_from_env)."""
    return approval_from_env(env, approver or recorded_approver(env, settings), at)
