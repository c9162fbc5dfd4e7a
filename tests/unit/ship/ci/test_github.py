"""The pull-request comment and the environment approver, against a fake GitHub API."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mlship.cli import app
from mlship.errors import CheckError, InputError
from mlship.ship.ci import github
from tests.conftest import REPO
from tests.fake_api import Answer, FakeApi, Request, fake_api

TOKEN = "ghs_test"
PAGE = 2  # comments per page: small, so finding the comment has to follow `Link: next`


class FakeGitHub:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.comments: list[dict[str, Any]] = [
            {
                "id": n,
                "body": f"a reviewer's note {n}",
                "html_url": f"c/{n}",
                "user": {"login": "kim"},
            }
            for n in (1, 2, 3)
        ]
        self.approvals: list[dict[str, Any]] = []
        self.url = ""  # set once the fake API listens

    def answer(self, request: Request) -> Answer:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"message": "Bad credentials"}, {}
        listing = re.fullmatch(
            r"/repos/acme/shop/issues/7/comments\?per_page=100(&page=(\d+))?", request.path
        )
        if request.method == "GET" and listing:
            page = int(listing.group(2) or 1)
            chunk = self.comments[(page - 1) * PAGE : page * PAGE]
            more = len(self.comments) > page * PAGE
            link = f"<{self.url}/repos/acme/shop/issues/7/comments?per_page=100&page={page + 1}>"
            return 200, chunk, ({"Link": f'{link}; rel="next"'} if more else {})
        if request.path == "/user":  # as for the job's GITHUB_TOKEN
            return 403, {"message": "Resource not accessible by integration"}, {}
        if request.method == "POST" and request.path == "/repos/acme/shop/issues/7/comments":
            made = {
                "id": 100 + len(self.comments),
                "body": request.body["body"],
                "user": {"login": github.ACTIONS_BOT},
            }
            made["html_url"] = f"c/{made['id']}"
            self.comments.append(made)
            return 201, made, {}
        edit = re.fullmatch(r"/repos/acme/shop/issues/comments/(\d+)", request.path)
        if request.method == "PATCH" and edit:
            comment = next(c for c in self.comments if c["id"] == int(edit.group(1)))
            comment["body"] = request.body["body"]
            return 200, comment, {}
        if request.path == "/repos/acme/shop/actions/runs/99/approvals":
            return 200, self.approvals, {}
        return 404, {"message": "Not Found"}, {}


@pytest.fixture
def fake() -> Iterator[tuple[FakeGitHub, FakeApi]]:
    state = FakeGitHub()
    with fake_api(state.answer) as api:
        state.url = api.url
        yield state, api


def _env(tmp_path: Path, api: FakeApi, token: str = TOKEN, pr: bool = True) -> dict[str, str]:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7}} if pr else {"ref": "main"}))
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_API_URL": api.url,
        "GITHUB_REPOSITORY": "acme/shop",
        "GITHUB_TOKEN": token,
        "GITHUB_RUN_ID": "99",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_WORKFLOW_REF": "acme/shop/.github/workflows/ci.yml@refs/pull/7/merge",
    }


def test_the_comment_is_added_once_then_updated_in_place(
    tmp_path: Path, fake: tuple[FakeGitHub, FakeApi]
) -> None:
    state, api = fake
    run = github.Run.from_env(_env(tmp_path, api))
    # given a pull request with three comments from people / when mlship comments twice
    first = github.upsert_comment(run, "gate: PASSED")
    second = github.upsert_comment(run, "gate: FAILED")
    # then there is one mlship comment, with the latest text, and the others are untouched
    ours = [c for c in state.comments if github.COMMENT_MARKER in c["body"]]
    assert len(ours) == 1 and first == second == ours[0]["html_url"]
    assert ours[0]["body"].endswith("gate: FAILED")
    assert [c["body"] for c in state.comments[:3]] == [f"a reviewer's note {n}" for n in (1, 2, 3)]
    assert [r.method for r in api.requests].count("PATCH") == 1
    # the second search followed the Link header to the page holding the comment
    assert any("page=2" in r.path for r in api.requests)


def test_a_comment_someone_else_wrote_with_the_marker_is_never_edited(
    tmp_path: Path, fake: tuple[FakeGitHub, FakeApi]
) -> None:
    state, api = fake
    # given a reviewer's comment that carries mlship's marker and a misleading verdict
    forged = f"{github.COMMENT_MARKER}\ngate: PASSED (trust me)"
    state.comments.insert(0, {"id": 9, "body": forged, "html_url": "c/9", "user": {"login": "eve"}})
    # when mlship comments
    url = github.upsert_comment(github.Run.from_env(_env(tmp_path, api)), "gate: FAILED")
    # then it adds its own comment and leaves the forged one as it was
    assert state.comments[0]["body"] == forged
    ours = [c for c in state.comments if c["user"]["login"] == github.ACTIONS_BOT]
    assert len(ours) == 1 and ours[0]["html_url"] == url
    assert ours[0]["body"].endswith("gate: FAILED")
    assert [r.method for r in api.requests].count("PATCH") == 0


def test_a_comment_of_another_workflow_as_the_same_bot_is_never_edited(
    tmp_path: Path, fake: tuple[FakeGitHub, FakeApi]
) -> None:
    state, api = fake
    run = github.Run.from_env(_env(tmp_path, api))
    # given a comment by another workflow of the repository, as the same Actions bot, that
    # quotes mlship's comment (marker and all)
    quoting = f"Summary of checks:\n> {run.marker}\n> gate: PASSED"
    other = {"id": 8, "body": quoting, "html_url": "c/8", "user": {"login": github.ACTIONS_BOT}}
    state.comments.insert(0, other)
    elsewhere = "<!-- mlship-report acme/shop/.github/workflows/nightly.yml -->\nold"
    state.comments.insert(1, {**other, "id": 10, "body": elsewhere, "html_url": "c/10"})
    # when mlship comments / then both are left as they were, and its own is added
    github.upsert_comment(run, "gate: FAILED")
    assert state.comments[0]["body"] == quoting and state.comments[1]["body"] == elsewhere
    assert [r.method for r in api.requests].count("PATCH") == 0
    assert run.marker == "<!-- mlship-report acme/shop/.github/workflows/ci.yml -->"


def test_api_errors_and_non_pull_request_events_are_named(
    tmp_path: Path, fake: tuple[FakeGitHub, FakeApi]
) -> None:
    _, api = fake
    with pytest.raises(CheckError, match="HTTP 401"):
        github.upsert_comment(github.Run.from_env(_env(tmp_path, api, token="wrong")), "x")
    with pytest.raises(InputError, match="not a pull request"):
        github.upsert_comment(github.Run.from_env(_env(tmp_path, api, pr=False)), "x")
    with pytest.raises(InputError, match="GITHUB_TOKEN"):
        github.Run.from_env({"GITHUB_REPOSITORY": "acme/shop"})


def test_the_approver_is_the_latest_reviewer_who_approved_production(
    tmp_path: Path, fake: tuple[FakeGitHub, FakeApi]
) -> None:
    state, api = fake
    run = github.Run.from_env(_env(tmp_path, api))
    assert github.environment_approver(run, "production") is None
    state.approvals = [
        {"state": "approved", "user": {"login": "sam"}, "environments": [{"name": "staging"}]},
        {"state": "rejected", "user": {"login": "kim"}, "environments": [{"name": "production"}]},
        {"state": "approved", "user": {"login": "ana"}, "environments": [{"name": "production"}]},
    ]
    assert github.environment_approver(run, "production") == "ana"


def test_mlship_comment_writes_the_job_summary_and_the_pull_request_comment(
    tmp_path: Path, fake: tuple[FakeGitHub, FakeApi], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, api = fake
    # given a project whose gate wrote its report on the model on disk, in a GitHub
    # pull-request job, and a load test of another model
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.skops").write_bytes(b"the model")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "gate.md").write_text("## mlship gate: ✅ PASSED\n")
    digest = hashlib.sha256(b"the model").hexdigest()
    (tmp_path / "reports" / "gate.json").write_text(json.dumps({"model_sha256": digest}))
    (tmp_path / "reports" / "loadtest.md").write_text("## Load test: passed\n")
    (tmp_path / "reports" / "loadtest.json").write_text(json.dumps({"model_sha256": "0" * 64}))
    summary = tmp_path / "summary.md"
    for name, value in {**_env(tmp_path, api), "GITHUB_STEP_SUMMARY": str(summary)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    # when
    result = CliRunner().invoke(app, ["comment"])
    # then the summary and the one comment hold the gate report, not the other model's
    # load test, which they say was left out
    assert result.exit_code == 0, result.output
    assert "mlship gate: ✅ PASSED" in summary.read_text()
    ours = [c for c in state.comments if github.COMMENT_MARKER in c["body"]]
    assert len(ours) == 1 and "mlship gate: ✅ PASSED" in ours[0]["body"]
    assert "Load test" not in ours[0]["body"]
    assert "reports/loadtest.json is left out: it describes another model" in ours[0]["body"]
    # --summary-only leaves the pull request alone and needs no token
    monkeypatch.delenv("GITHUB_TOKEN")
    assert CliRunner().invoke(app, ["comment", "--summary-only"]).exit_code == 0
    assert [r.method for r in api.requests].count("POST") == 1
    assert summary.read_text().count("mlship gate: ✅ PASSED") == 2


def test_promote_records_the_reviewer_of_the_production_environment(
    tmp_path: Path, fake: tuple[FakeGitHub, FakeApi], monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from mlship.config.settings import Settings
    from mlship.ship.ci.approval import recorded_approver

    state, api = fake
    state.approvals = [
        {"state": "approved", "user": {"login": "ana"}, "environments": [{"name": "production"}]}
    ]
    for name, value in _env(tmp_path, api).items():
        monkeypatch.setenv(name, value)
    assert recorded_approver(os.environ, Settings()) == "ana"
