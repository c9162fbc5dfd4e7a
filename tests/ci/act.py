"""Running the real workflow files with act on this host (no container images), for
tests/ci/test_act.py (ci.yml) and tests/e2e/test_delivery.py (cd.yml).

The `uses:` actions are replaced by the local stand-ins under tests/ci/act_stand_ins; act
handles actions/checkout itself (it copies the working tree). `services:` are ignored on
the host, so whatever a workflow's services provide is started by the test."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO, hermetic_env
from tests.projects import DEFAULT_EXAMPLE, use_example
from tests.tools import tool

STAND_INS = Path(__file__).with_name("act_stand_ins")
STAND_IN_FOR = {  # every action the workflows use, but checkout -> its stand-in
    "actions/setup-python@v5": "setup-python",
    "actions/cache@v4": "cache",
    "mikepenz/action-junit-report@v5": "junit-report",
    "actions/upload-artifact@v4": "upload-artifact",
    "actions/download-artifact@v4": "download-artifact",
    "google-github-actions/auth@v2": "google-auth",
    "docker/login-action@v3": "docker-login",
    "google-github-actions/setup-gcloud@v2": "setup-gcloud",
    "google-github-actions/get-gke-credentials@v2": "gke-credentials",
}
# long: act masks every substring of the log that equals a secret
TOKEN = "ghs_act_test_token_0123456789abcdefghijklmnopqrstuvwxyz"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
}


def copy_repository(destination: Path, branch: str, example: str | None = DEFAULT_EXAMPLE) -> None:
    """The tracked files as they are now, with an example's params and code over the team's
    own (unless `example` is None), committed on `branch` in a fresh repository whose
    origin/main is that commit, as in a checkout on GitHub."""
    listed = (
        subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    if example is not None:
        use_example(destination, example)
    git = hermetic_env() | GIT_IDENTITY
    subprocess.run(["git", "init", "-q", "-b", branch], cwd=destination, env=git, check=True)
    commit(destination)
    subprocess.run(
        ["git", "update-ref", "refs/remotes/origin/main", "HEAD"],
        cwd=destination,
        env=git,
        check=True,
    )


def commit(repo: Path) -> None:
    git = hermetic_env() | GIT_IDENTITY
    for command in (["add", "-A"], ["commit", "-qm", "act"]):
        subprocess.run(["git", *command], cwd=repo, env=git, check=True)


def uses(workflow: Path) -> set[str]:
    """The actions a workflow file uses, but checkout and its own reusable workflows."""
    found = set(re.findall(r"uses: (\S+)", workflow.read_text())) - {"actions/checkout@v4"}
    return {action for action in found if not action.startswith("./")}


@dataclass(frozen=True)
class ActRun:
    log: str
    artifacts: Path  # what upload-artifact kept: artifacts/<name>/...
    stand_in_log: Path  # what the stand-ins were given, a line each

    def succeeded(self) -> list[str]:
        """The `make ...` steps that succeeded, in the order they ran."""
        return re.findall(r"✅ {2}Success - Main (make [\w =]+?) \[", self.log)


def act(
    repo: Path,
    event_name: str,
    event: Path,
    workflow: str,
    *,
    variables: Mapping[str, str] = {},
    secrets: Mapping[str, str] = {},
    env: Mapping[str, str] = {},
    path_first: Iterable[Path] = (),
    timeout: int = 1200,
    must_pass: bool = True,
) -> ActRun:
    """act runs `workflow` in `repo` for the event; it must pass (or fail: `must_pass`). The
    test stage is `make check` (the project's checks: no recursion into this suite); artifacts
    and the stand-ins' record go beside `repo`.
    `env` reaches every step (act's --env wins over the workflow's own `env`); `variables`
    are the repository's `vars`, `secrets` its secrets."""
    artifacts, stand_in_log = repo.parent / "artifacts", repo.parent / "stand-ins.log"
    env = {**env, "ACT_ARTIFACTS": str(artifacts), "ACT_STAND_IN_LOG": str(stand_in_log)}
    command = [
        tool("act"),
        event_name,
        "-W",
        workflow,
        "-e",
        str(event),
        "-P",
        "ubuntu-24.04=-self-hosted",
        "-s",
        f"GITHUB_TOKEN={TOKEN}",
    ]
    for name, value in variables.items():
        command += ["--var", f"{name}={value}"]
    for name, value in secrets.items():
        command += ["-s", f"{name}={value}"]
    for name, value in env.items():
        command += ["--env", f"{name}={value}"]
    for action in uses(repo / workflow):
        command += ["--local-repository", f"{action}={STAND_INS / STAND_IN_FOR[action]}"]
    process_env = hermetic_env() | {"HOME": os.environ.get("HOME", str(repo.parent))}
    process_env["PATH"] = os.pathsep.join([*map(str, path_first), process_env["PATH"]])
    # act copies the repository (and the job's .venv) under ~/.cache/act, and leaves the
    # copy behind when a job fails or act is stopped: gigabytes per run
    workdirs = Path(process_env["HOME"]) / ".cache" / "act"
    before = set(workdirs.iterdir()) if workdirs.is_dir() else set()
    try:
        done = subprocess.run(
            command,
            cwd=repo,
            env=process_env,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=timeout,
        )
    finally:
        for left in (set(workdirs.iterdir()) if workdirs.is_dir() else set()) - before:
            shutil.rmtree(left, ignore_errors=True)
    log = done.stdout + done.stderr
    assert (done.returncode == 0) == must_pass, failure_excerpt(log)
    return ActRun(log, artifacts, stand_in_log)


def failure_excerpt(log: str, before: int = 80) -> str:
    """What a failed job shows: the lines leading to its first failed step (act marks it
    with ❌), then the log's end."""
    lines = log.splitlines()
    failed = next((i for i, line in enumerate(lines) if "❌" in line), None)
    if failed is None:
        return log[-8000:]
    return "\n".join([*lines[max(0, failed - before) : failed + 3], "[...]", *lines[-20:]])
