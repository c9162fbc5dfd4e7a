"""GitHub Actions: the workflows' steps, one pull-request comment updated in place, and who
approved a deployment.

Everything is read from the variables GitHub Actions sets (GITHUB_API_URL, GITHUB_REPOSITORY,
GITHUB_EVENT_PATH, GITHUB_RUN_ID) and the job's GITHUB_TOKEN.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from mlship.config.settings import Settings
from mlship.errors import CheckError, InputError
from mlship.ship.ci.system import STEP_NAMES, PipelineError, RunInfo, Steps, check_stray_make
from mlship.ship.delivery import APPROVE, RETRAIN

COMMENT_MARKER = "<!-- mlship-report"  # the first line of mlship's comment: + workflow -->
ACTIONS_BOT = "github-actions[bot]"  # the author of comments made with GITHUB_TOKEN
PRODUCTION = "production"  # the environment whose required reviewers approve a release


@dataclass(frozen=True)
class Run:
    api_url: str
    repository: str  # owner/name
    token: str
    run_id: str
    pull_request: int | None  # set on pull_request events
    workflow: str = ""  # the workflow file (GITHUB_WORKFLOW_REF without its @ref)

    @property
    def marker(self) -> str:
        """The first line of this workflow's comment: another workflow of the repository,
        commenting as the same Actions bot, has its own (and a comment that only quotes the
        marker further down is not this one)."""
        return f"{COMMENT_MARKER} {self.workflow} -->"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Run:
        missing = [name for name in ("GITHUB_REPOSITORY", "GITHUB_TOKEN") if not env.get(name)]
        if missing:
            raise InputError(
                f"not in a GitHub Actions job, or the step lacks {' and '.join(missing)}"
            )
        return cls(
            api_url=env.get("GITHUB_API_URL", "https://api.github.com").rstrip("/"),
            repository=env["GITHUB_REPOSITORY"],
            token=env["GITHUB_TOKEN"],
            run_id=env.get("GITHUB_RUN_ID", ""),
            pull_request=_pull_request_number(env.get("GITHUB_EVENT_PATH")),
            workflow=env.get("GITHUB_WORKFLOW_REF", env.get("GITHUB_WORKFLOW", "")).split("@")[0],
        )

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.api_url,
            timeout=30.0,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            },
        )


def _pull_request_number(event_path: str | None) -> int | None:
    if not event_path:
        return None
    try:
        event = json.loads(Path(event_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"{event_path}: cannot read the GitHub event: {error}") from error
    number = (event.get("pull_request") or {}).get("number")
    return int(number) if number is not None else None


def _checked(response: httpx.Response, what: str) -> Any:
    if response.is_error:
        raise CheckError(
            f"GitHub API: {what} failed: HTTP {response.status_code} {response.text[:300]}"
        )
    return response.json()


def own_login(client: httpx.Client) -> str:
    """Who this token comments as: a personal token's user; the job's GITHUB_TOKEN cannot
    read /user and comments as the Actions bot."""
    response = client.get("/user")
    if response.status_code == 200:
        return str(response.json()["login"])
    return ACTIONS_BOT


def upsert_comment(run: Run, body: str) -> str:
    """Update the pull request's mlship comment or add it; its URL. Only a comment this
    token wrote and that starts with this workflow's marker counts: anyone can paste the
    marker into a comment of their own, and another workflow commenting as the same Actions
    bot may quote it."""
    if run.pull_request is None:
        raise InputError("this GitHub event is not a pull request: there is nothing to comment on")
    text = f"{run.marker}\n{body}"
    issue = f"/repos/{run.repository}/issues/{run.pull_request}"
    with run.client() as client:
        login = own_login(client)
        existing = None
        url: str | None = f"{issue}/comments?per_page=100"
        while url and existing is None:
            response = client.get(url)
            comments = _checked(response, "listing the pull request's comments")
            existing = next(
                (
                    c
                    for c in comments
                    if (c.get("user") or {}).get("login") == login
                    and c.get("body", "").startswith(run.marker + "\n")
                ),
                None,
            )
            url = response.links.get("next", {}).get("url")
        if existing is None:
            made = client.post(f"{issue}/comments", json={"body": text})
            return str(_checked(made, "adding the comment")["html_url"])
        edited = client.patch(
            f"/repos/{run.repository}/issues/comments/{existing['id']}", json={"body": text}
        )
        return str(_checked(edited, "updating the comment")["html_url"])


def environment_approver(run: Run, environment: str) -> str | None:
    """The reviewer who approved `environment` for this workflow run, if one did."""
    with run.client() as client:
        approvals = _checked(
            client.get(f"/repos/{run.repository}/actions/runs/{run.run_id}/approvals"),
            "reading the run's deployment approvals",
        )
    for approval in reversed(approvals):  # the latest decision last
        names = {e.get("name") for e in approval.get("environments", [])}
        if approval.get("state") == "approved" and environment in names:
            return str(approval["user"]["login"])
    return None


# --- the CI system -------------------------------------------------------------------------


class GitHubActions:
    name: str = "github-actions"
    docs: str = "docs/ci/github-actions.md"
    pipelines: tuple[str, ...] = (".github/workflows/*.yml",)

    def detect(self, env: Mapping[str, str]) -> bool:
        return env.get("GITHUB_ACTIONS") == "true"

    def run_info(self, env: Mapping[str, str]) -> RunInfo:
        url = "{}/{}/actions/runs/{}".format(
            env.get("GITHUB_SERVER_URL", ""),
            env.get("GITHUB_REPOSITORY", ""),
            env.get("GITHUB_RUN_ID", ""),
        )
        return RunInfo(env.get("GITHUB_TRIGGERING_ACTOR") or env.get("GITHUB_ACTOR"), url)

    def recorded_approver(self, env: Mapping[str, str], settings: Settings) -> str | None:
        """The reviewer who approved the `production` environment of this run."""
        if not env.get("GITHUB_TOKEN"):
            return None
        return environment_approver(Run.from_env(env), PRODUCTION)

    def read_steps(self, path: Path) -> Steps:
        return read_workflow_steps(path)


SYSTEM = GitHubActions()


def github_jobs_in_order(workflow: dict[str, Any]) -> list[str]:
    jobs: dict[str, Any] = workflow["jobs"]
    ordered: list[str] = []
    while len(ordered) < len(jobs):
        ready = [
            name
            for name, job in jobs.items()
            if name not in ordered and set(_as_list(job.get("needs"))) <= set(ordered)
        ]
        if not ready:
            raise PipelineError("jobs' `needs` form a cycle")
        ordered.append(ready[0])
    return ordered


def _as_list(value: Any) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def read_workflow_steps(path: Path) -> Steps:
    workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
    found: Steps = []
    for job_name in github_jobs_in_order(workflow):
        job = workflow["jobs"][job_name]
        environment = job.get("environment")
        name = environment.get("name") if isinstance(environment, dict) else environment
        if name == "production":  # required reviewers hold the job until one approves
            found.append((APPROVE, None))
        if job_name == RETRAIN.name:  # hands over to the delivery workflow it calls
            found.append((RETRAIN.name, None))
        for step in job.get("steps", []):
            command = " ".join(str(step.get("run", "")).split())
            check_stray_make(f"{path.name} job {job_name}", step.get("id"), command)
            if step.get("id") in STEP_NAMES:
                found.append((step["id"], command))
    return found
