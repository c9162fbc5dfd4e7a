import pytest

from mlship.errors import InputError
from mlship.ship.ci.approval import approval_from_env

AT = "2026-01-01T00:00:00+00:00"


def test_github_actions_records_the_actor_and_the_run() -> None:
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_ACTOR": "octocat",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/reviews",
        "GITHUB_RUN_ID": "42",
    }
    approval = approval_from_env(env, None, AT)
    assert (approval.approver, approval.via) == ("octocat", "github-actions")
    assert approval.url == "https://github.com/acme/reviews/actions/runs/42"
    assert approval.tags()["mlship.approved_by"] == "octocat"


def test_jenkins_takes_the_input_steps_submitter() -> None:
    env = {
        "JENKINS_URL": "https://ci",
        "APPROVER": "release-lead",
        "BUILD_URL": "https://ci/job/1/",
    }
    approval = approval_from_env(env, None, AT)
    assert (approval.approver, approval.via, approval.url) == (
        "release-lead",
        "jenkins",
        "https://ci/job/1/",
    )


def test_cloud_build_needs_an_explicit_approver() -> None:
    env = {"MLSHIP_CI": "cloud-build", "BUILD_ID": "b1", "PROJECT_ID": "p"}
    with pytest.raises(InputError, match="pass --approver"):
        approval_from_env(env, None, AT)
    assert approval_from_env(env, "rm@acme.com", AT).via == "cloud-build"


def test_an_explicit_approver_wins_and_local_runs_say_so() -> None:
    approval = approval_from_env({"GITHUB_ACTIONS": "true", "GITHUB_ACTOR": "bot"}, "alice", AT)
    assert approval.approver == "alice"
    assert approval_from_env({}, None, AT).via == "local"
