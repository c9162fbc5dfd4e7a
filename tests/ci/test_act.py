"""ci.yml executed, not parsed: act runs the real workflow file on this host, for a pull
request, with local stand-ins for the third-party actions (tests/ci/act_stand_ins) and a
fake GitHub API that receives the gate comment.

The recursion: ci.yml's first stage is `make test`, which would run this test again. The
inner run gets PYTEST_ADDOPTS naming one small test file, which pytest reads from the
environment: the inner `make test` lints, type-checks and runs that file only, and the
workflow file stays exactly as GitHub runs it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, hermetic_env
from tests.fake_api import FakeApi, fake_api
from tests.tools import tool
from tests.unit.test_github import FakeGitHub

pytestmark = pytest.mark.integration
STAND_INS = Path(__file__).with_name("act_stand_ins")
USES = {  # what ci.yml uses -> its stand-in
    "actions/setup-python@v5": "setup-python",
    "actions/cache@v4": "cache",
    "mikepenz/action-junit-report@v5": "junit-report",
    "actions/upload-artifact@v4": "upload-artifact",
}
# long: act masks every substring of the log that equals a secret
TOKEN = "ghs_act_test_token_0123456789abcdefghijklmnopqrstuvwxyz"
INNER_TESTS = "tests/unit/test_paired.py"


def _copy(destination: Path) -> None:
    """The tracked files as they are now, committed in a fresh repository whose origin/main
    is that commit (the comment step diffs against origin/main)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                            check=True).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    git = {**hermetic_env(), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}  # fmt: skip
    for command in (["init", "-q", "-b", "feature"], ["add", "-A"], ["commit", "-qm", "pr"],
                    ["update-ref", "refs/remotes/origin/main", "HEAD"]):  # fmt: skip
        subprocess.run(["git", *command], cwd=destination, env=git, check=True)


@pytest.fixture
def github() -> Iterator[tuple[FakeGitHub, FakeApi]]:
    state = FakeGitHub(TOKEN)
    with fake_api(state.answer) as api:
        state.url = api.url
        yield state, api


def test_ci_yml_runs_the_stages_in_order_and_comments_on_the_pull_request(
    tmp_path: Path, github: tuple[FakeGitHub, FakeApi]
) -> None:
    state, api = github
    repo, artifacts = tmp_path / "repo", tmp_path / "artifacts"
    repo.mkdir()
    _copy(repo)
    workflow = (repo / ".github/workflows/ci.yml").read_text()
    assert set(re.findall(r"uses: (\S+)", workflow)) == {"actions/checkout@v4", *USES}
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7, "base": {"ref": "main"}},
                                 "repository": {"full_name": "acme/shop"}}))  # fmt: skip
    command = [
        tool("act"),
        "pull_request",
        "-W",
        ".github/workflows/ci.yml",
        "-e",
        str(event),
        "-P",
        "ubuntu-24.04=-self-hosted",
        "-s",
        f"GITHUB_TOKEN={TOKEN}",
        "--env",
        f"PYTEST_ADDOPTS={INNER_TESTS}",
        "--env",
        f"GITHUB_API_URL={api.url}",
        "--env",
        "GITHUB_REPOSITORY=acme/shop",
        "--env",
        f"ACT_ARTIFACTS={artifacts}",
    ]
    for uses, folder in USES.items():
        command += ["--local-repository", f"{uses}={STAND_INS / folder}"]
    env = {**hermetic_env(), "HOME": os.environ.get("HOME", str(tmp_path))}
    done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True,
                          timeout=1200)  # fmt: skip
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-6000:]

    # the stages ran in the file's order, each passing; the inner tests were the subset
    ran = re.findall(r"✅ {2}Success - Main (make \w+)", log)
    assert ran == ["make test", "make train", "make gate"]
    assert f"{INNER_TESTS} " in log and "passed" in log
    # the gate's comment reached the pull request, and the reports the artifact
    posted = [r for r in api.requests if r.method == "POST"]
    assert len(posted) == 1 and posted[0].path == "/repos/acme/shop/issues/7/comments"
    assert "mlship gate: ✅ PASSED" in state.comments[-1]["body"]
    kept = artifacts / "reports" / "reports"
    assert json.loads((kept / "gate.json").read_text())["passed"] is True
    assert (kept / "junit" / "gate.xml").is_file()
