"""The git checkout the pipeline runs in: its commit and its remote."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GitState:
    sha: str
    dirty: bool


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)


# what `dvc repro` itself rewrites as the stages run: not a change to the code or the params
PIPELINE_RECORDS = (":(exclude)dvc.lock", ":(exclude,glob)**/.gitignore")


def git_state(cwd: Path | None = None) -> GitState:
    """The commit the code came from, and whether tracked files differ from it (but the
    records DVC rewrites); 'unknown' outside a git checkout."""
    try:
        head = _git("rev-parse", "HEAD", cwd=cwd)
        status = _git(
            "status", "--porcelain", "--untracked-files=no", "--", ".", *PIPELINE_RECORDS, cwd=cwd
        )
    except OSError:
        return GitState(sha="unknown", dirty=False)
    if head.returncode != 0 or status.returncode != 0:
        return GitState(sha="unknown", dirty=False)
    return GitState(sha=head.stdout.strip(), dirty=bool(status.stdout.strip()))


def remote_url() -> str:
    return _git("config", "--get", "remote.origin.url").stdout.strip()
