"""Cloud Build from the command line, through google-cloud-build's client: run a trigger,
list the builds waiting for approval, approve or reject one, and read who approved it.

Credentials are Application Default Credentials (Workload Identity in CI,
`gcloud auth application-default login` on a laptop).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import yaml

from mlship.config.settings import Settings
from mlship.errors import CheckError, InputError, ServiceError, looks_unreachable
from mlship.ship.ci.system import STEP_NAMES, RunInfo, Steps, check_stray_make
from mlship.ship.delivery import APPROVE, RETRAIN

if TYPE_CHECKING:
    from google.cloud.devtools.cloudbuild_v1 import Build, CloudBuildClient


# Requests carry resource names only: the client takes the first URL pattern whose fields are
# set, and a project_id field would select the location-less (global) one.
@dataclass(frozen=True)
class Location:
    project: str
    region: str  # "global" or a region such as europe-west1

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    def console_url(self, build_id: str) -> str:
        return (
            f"https://console.cloud.google.com/cloud-build/builds;region={self.region}/"
            f"{build_id}?project={self.project}"
        )


def client(endpoint: str | None = None) -> CloudBuildClient:
    from google.api_core.client_options import ClientOptions
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud.devtools import cloudbuild_v1

    options = ClientOptions(api_endpoint=endpoint) if endpoint else None
    try:
        return cloudbuild_v1.CloudBuildClient(transport="rest", client_options=options)
    except DefaultCredentialsError as error:
        raise InputError(
            f"no Google Cloud credentials: {error} (run `gcloud auth application-default "
            "login`, or use Workload Identity in CI)"
        ) from error


def connect(settings: Settings) -> tuple[CloudBuildClient, Location]:
    """The client and the project/region from the settings."""
    if not settings.gcp_project:
        raise InputError("no Google Cloud project: set MLSHIP_GCP_PROJECT")
    return client(settings.cloudbuild_endpoint), Location(settings.gcp_project, settings.gcp_region)


T = TypeVar("T")


def _call(what: str, call: Callable[[], T]) -> T:
    from google.api_core.exceptions import GoogleAPICallError, ServerError

    try:
        return call()
    except ServerError as error:
        raise ServiceError(f"Cloud Build: {what} failed on its side: {error.message}") from error
    except GoogleAPICallError as error:
        raise CheckError(f"Cloud Build: {what} failed: {error.message or error}") from error
    except OSError as error:  # requests' ConnectionError is an OSError
        if looks_unreachable(error):
            raise ServiceError(f"Cloud Build: {what}: the API did not answer: {error}") from error
        raise


def parse_substitutions(pairs: list[str]) -> dict[str, str]:
    """KEY=VALUE pairs; user substitutions start with an underscore, as Cloud Build requires."""
    substitutions = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.startswith("_") or not key[1:].replace("_", "").isalnum():
            raise InputError(
                f"--substitution {pair!r}: expected _KEY=value (user substitutions start with _)"
            )
        substitutions[key] = value
    return substitutions


def run_trigger(
    api: CloudBuildClient,
    where: Location,
    trigger: str,
    *,
    branch: str | None,
    sha: str | None,
    substitutions: dict[str, str],
) -> Build:
    """Start a build from a trigger (by name or id); its build, without waiting for it."""
    from google.cloud.devtools import cloudbuild_v1

    if branch and sha:
        raise InputError("give --branch or --sha, not both")
    source = cloudbuild_v1.RepoSource(
        project_id=where.project,
        branch_name=branch or "",
        commit_sha=sha or "",
        substitutions=substitutions,
    )
    operation = _call(
        f"running trigger {trigger}",
        lambda: api.run_build_trigger(
            request={"name": f"{where.parent}/triggers/{trigger}", "source": source}
        ),
    )
    build: Build = operation.metadata.build  # BuildOperationMetadata
    return build


def get_build(api: CloudBuildClient, where: Location, build_id: str) -> Build:
    return _call(
        f"reading build {build_id}",
        lambda: api.get_build(request={"name": f"{where.parent}/builds/{build_id}"}),
    )


def awaiting_approval(api: CloudBuildClient, where: Location) -> list[Build]:
    from google.cloud.devtools import cloudbuild_v1

    pending = cloudbuild_v1.BuildApproval.State.PENDING
    builds = _call(
        "listing builds",
        lambda: list(
            api.list_builds(request={"parent": where.parent, "filter": 'status="PENDING"'})
        ),
    )
    return [build for build in builds if build.approval.state == pending]


def decide(
    api: CloudBuildClient, where: Location, build_id: str, *, approve: bool, comment: str
) -> None:
    """Approve or reject a build that waits for approval."""
    from google.cloud.devtools import cloudbuild_v1

    build = get_build(api, where, build_id)
    if build.approval.state != cloudbuild_v1.BuildApproval.State.PENDING:
        state = build.approval.state.name if build.approval else "none"
        raise InputError(f"build {build_id} is not waiting for approval (approval: {state})")
    decision = cloudbuild_v1.ApprovalResult.Decision
    result = cloudbuild_v1.ApprovalResult(
        decision=decision.APPROVED if approve else decision.REJECTED, comment=comment
    )
    _call(
        f"deciding on build {build_id}",
        lambda: api.approve_build(
            request={"name": f"{where.parent}/builds/{build_id}", "approval_result": result}
        ),
    )


def approver(api: CloudBuildClient, where: Location, build_id: str) -> str | None:
    """The account that approved build `build_id`, if it was approved."""
    from google.cloud.devtools import cloudbuild_v1

    result = get_build(api, where, build_id).approval.result
    if result.decision != cloudbuild_v1.ApprovalResult.Decision.APPROVED:
        return None
    return result.approver_account or None


# --- the CI system -------------------------------------------------------------------------


class CloudBuild:
    """A run is on Cloud Build when the build sets MLSHIP_CI=cloud-build (cloudbuild.yaml
    does); the approver is the build's approval record, else MLSHIP_APPROVER."""

    name: str = "cloud-build"
    docs: str = "docs/ci/cloud-build.md"
    pipelines: tuple[str, ...] = ("cloudbuild.yaml", ".ci/cloudbuild/*.yaml")

    def detect(self, env: Mapping[str, str]) -> bool:
        return env.get("MLSHIP_CI") == "cloud-build"

    def run_info(self, env: Mapping[str, str]) -> RunInfo:
        url = "https://console.cloud.google.com/cloud-build/builds/{}?project={}".format(
            env.get("BUILD_ID", ""), env.get("PROJECT_ID", "")
        )
        return RunInfo(env.get("MLSHIP_APPROVER"), url)

    def recorded_approver(self, env: Mapping[str, str], settings: Settings) -> str | None:
        if not env.get("BUILD_ID") or not settings.gcp_project:
            return None
        where = Location(settings.gcp_project, settings.gcp_region)
        return approver(client(settings.cloudbuild_endpoint), where, env["BUILD_ID"])

    def read_steps(self, path: Path) -> Steps:
        return read_build_steps(path)


SYSTEM = CloudBuild()


def read_build_steps(path: Path) -> Steps:
    """Steps run `make` as their entrypoint; the approval step runs the trigger whose
    approvalConfig holds the production build (checked by the tests)."""
    found: Steps = []
    for step in yaml.safe_load(path.read_text(encoding="utf-8"))["steps"]:
        command = " ".join([step.get("entrypoint", ""), *map(str, step.get("args", []))]).strip()
        check_stray_make(f"{path.name}", step.get("id"), command)
        if step.get("id") in (APPROVE, RETRAIN.name):  # each runs another trigger
            found.append((step["id"], None))
        elif step.get("id") in STEP_NAMES:
            found.append((step["id"], command))
    return found
