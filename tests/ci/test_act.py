"""ci.yml executed, not parsed: act runs the real workflow file on this host for a pull
request (tests/ci/act.py), with a fake GitHub API that receives the gate comment. cd.yml is
executed the same way in tests/e2e/test_delivery.py (it needs the Docker engine).

ci.yml's test stage is `make check`: the project's own checks (tests/project) on the
example's params, not this framework suite, so the run does not recurse."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlship.ship.delivery import pull_request_steps
from tests.ci.act import STAND_IN_FOR, TOKEN, act, copy_repository, uses
from tests.conftest import REPO
from tests.fake_api import FakeApi, fake_api
from tests.unit.ship.ci.test_github import FakeGitHub

pytestmark = pytest.mark.integration


@pytest.fixture
def github() -> Iterator[tuple[FakeGitHub, FakeApi]]:
    state = FakeGitHub(TOKEN)
    with fake_api(state.answer) as api:
        state.url = api.url
        yield state, api


def test_every_action_the_workflows_use_has_a_stand_in() -> None:
    for workflow in (REPO / ".github/workflows").glob("*.yml"):
        assert uses(workflow) <= set(STAND_IN_FOR), workflow.name


def test_ci_yml_runs_the_stages_in_order_and_comments_on_the_pull_request(
    tmp_path: Path, github: tuple[FakeGitHub, FakeApi]
) -> None:
    state, api = github
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_repository(repo, branch="feature")
    event = tmp_path / "event.json"
    event.write_text(
        json.dumps(
            {
                "pull_request": {"number": 7, "base": {"ref": "main"}},
                "repository": {"full_name": "acme/shop"},
            }
        )
    )
    run = act(
        repo,
        "pull_request",
        event,
        ".github/workflows/ci.yml",
        env={
            "GITHUB_API_URL": api.url,
            "GITHUB_REPOSITORY": "acme/shop",
        },
    )

    # the stages ran in the file's order, each passing; the test stage ran the project's checks
    assert run.succeeded() == [stage.command for stage in pull_request_steps()]
    assert "pytest tests/project" in run.log and " passed" in run.log
    # the gate's comment reached the pull request, and the reports the artifact
    posted = [r for r in api.requests if r.method == "POST"]
    assert len(posted) == 1 and posted[0].path == "/repos/acme/shop/issues/7/comments"
    assert "mlship gate: ✅ PASSED" in state.comments[-1]["body"]
    kept = run.artifacts / "reports"
    assert json.loads((kept / "gate.json").read_text())["passed"] is True
    assert (kept / "junit" / "gate.xml").is_file()


def test_cd_yml_stops_at_once_without_the_team_mlflow_server(tmp_path: Path) -> None:
    """Its two jobs share only the team server: without it, promote would fail at the end."""
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_repository(repo, branch="main")
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"ref": "refs/heads/main"}))
    run = act(repo, "push", event, ".github/workflows/cd.yml", must_pass=False, timeout=300)
    assert "set the repository variable MLFLOW_TRACKING_URI" in run.log
    assert run.succeeded() == []  # not one stage ran
