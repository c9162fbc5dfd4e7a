"""`mlship cloudbuild` and the Cloud Build approver, against a fake Cloud Build REST API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import google.auth
import pytest
from google.auth.credentials import AnonymousCredentials
from typer.testing import CliRunner

from mlship.cli import app
from mlship.ship.ci import cloudbuild
from tests.fake_api import Answer, FakeApi, Request, fake_api

PARENT = "/v1/projects/acme/locations/europe-west1"
METADATA = "type.googleapis.com/google.devtools.cloudbuild.v1.BuildOperationMetadata"


class FakeCloudBuild:
    def __init__(self) -> None:
        self.builds: dict[str, dict[str, Any]] = {
            "done1": {"id": "done1", "status": "SUCCESS"},
        }

    def answer(self, request: Request) -> Answer:
        run = re.fullmatch(rf"{PARENT}/triggers/([\w-]+):run(\?.*)?", request.path)
        if request.method == "POST" and run:
            if run.group(1) != "mlship-production":
                return 404, {"error": {"code": 404, "message": "trigger not found"}}, {}
            build = {
                "id": f"b{len(self.builds)}",
                "status": "PENDING",
                "substitutions": {
                    "TRIGGER_NAME": run.group(1),
                    **request.body["source"].get("substitutions", {}),
                },
                "approval": {"state": "PENDING"},
            }
            self.builds[build["id"]] = build
            return (
                200,
                {"name": "operations/run", "metadata": {"@type": METADATA, "build": build}},
                {},
            )
        one = re.fullmatch(rf"{PARENT}/builds/(\w+)(:approve)?(\?.*)?", request.path)
        if one and one.group(1) in self.builds:
            build = self.builds[one.group(1)]
            if request.method == "POST" and one.group(2):
                decision = request.body["approvalResult"]
                build["approval"] = {
                    "state": "APPROVED" if decision["decision"] == "APPROVED" else "REJECTED",
                    "result": {**decision, "approverAccount": "rm@acme.example"},
                }
                return 200, {"name": "operations/approve", "done": True}, {}
            return 200, build, {}
        if request.method == "GET" and request.path.startswith(f"{PARENT}/builds?"):
            return 200, {"builds": list(self.builds.values())}, {}
        return 404, {"error": {"code": 404, "message": f"no route {request.path}"}}, {}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeCloudBuild, FakeApi]]:
    state = FakeCloudBuild()
    monkeypatch.setattr(google.auth, "default", lambda **_: (AnonymousCredentials(), "acme"))
    with fake_api(state.answer) as api:
        monkeypatch.setenv("MLSHIP_CLOUDBUILD_ENDPOINT", api.url)
        monkeypatch.setenv("MLSHIP_GCP_PROJECT", "acme")
        monkeypatch.setenv("MLSHIP_GCP_REGION", "europe-west1")
        yield state, api


def test_submit_runs_the_trigger_and_the_build_waits_for_approval(
    fake: tuple[FakeCloudBuild, FakeApi],
) -> None:
    state, api = fake
    result = CliRunner().invoke(
        app,
        [
            "cloudbuild",
            "submit",
            "--trigger",
            "mlship-production",
            "--substitution",
            "_RELEASE_SHA=abc123",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "b1"
    sent = api.requests[-1]
    assert sent.path.startswith(f"{PARENT}/triggers/mlship-production:run")
    assert sent.body["source"]["substitutions"] == {"_RELEASE_SHA": "abc123"}
    assert state.builds["b1"]["approval"]["state"] == "PENDING"
    listed = CliRunner().invoke(app, ["cloudbuild", "pending"])
    assert listed.exit_code == 0 and listed.stdout.split() == ["b1", "mlship-production", "abc123"]


def test_approve_records_the_decision_and_the_approver_is_read_back(
    fake: tuple[FakeCloudBuild, FakeApi],
) -> None:
    state, _ = fake
    assert (
        CliRunner()
        .invoke(app, ["cloudbuild", "submit", "--trigger", "mlship-production"])
        .exit_code
        == 0
    )
    result = CliRunner().invoke(app, ["cloudbuild", "approve", "b1", "--comment", "release 7"])
    assert result.exit_code == 0, result.output
    assert state.builds["b1"]["approval"]["result"]["comment"] == "release 7"
    where = cloudbuild.Location("acme", "europe-west1")
    api = cloudbuild.client(fake[1].url)
    assert cloudbuild.approver(api, where, "b1") == "rm@acme.example"
    # a build no longer waiting cannot be decided again
    again = CliRunner().invoke(app, ["cloudbuild", "approve", "b1", "--reject"])
    assert again.exit_code == 2 and "not waiting for approval" in again.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit", "--trigger", "nope"], "trigger not found"),
        (["submit", "--trigger", "t", "--substitution", "RELEASE=1"], "_KEY=value"),
        (["submit", "--trigger", "t", "--branch", "main", "--sha", "abc"], "not both"),
        (["approve", "missing"], "reading build missing failed"),
    ],
)
def test_bad_requests_are_named(
    fake: tuple[FakeCloudBuild, FakeApi], args: list[str], message: str
) -> None:
    result = CliRunner().invoke(app, ["cloudbuild", *args])
    assert result.exit_code in (1, 2) and message in result.output, result.output


def test_without_a_project_the_command_says_which_variable_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("MLSHIP_GCP_PROJECT", "GOOGLE_CLOUD_PROJECT", "PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(app, ["cloudbuild", "pending"])
    assert result.exit_code == 2 and "MLSHIP_GCP_PROJECT" in result.output


def test_promote_in_cloud_build_records_the_builds_approver(
    fake: tuple[FakeCloudBuild, FakeApi], monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from mlship.config.settings import Settings
    from mlship.ship.ci.approval import recorded_approver

    state, _ = fake
    state.builds["b9"] = {
        "id": "b9",
        "approval": {
            "state": "APPROVED",
            "result": {"decision": "APPROVED", "approverAccount": "rm@acme.example"},
        },
    }
    monkeypatch.setenv("MLSHIP_CI", "cloud-build")
    monkeypatch.setenv("BUILD_ID", "b9")
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    assert recorded_approver(os.environ, Settings()) == "rm@acme.example"
