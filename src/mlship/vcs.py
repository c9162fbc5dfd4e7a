"""The git checkout the pipeline runs in: its commit, a ref, a file at a ref, its remote."""

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


def resolve_ref(ref: str) -> str | None:
    """`ref` itself, or `origin/<ref>` where CI checkouts have only remote-tracking branches."""
    for candidate in (ref, f"origin/{ref}"):
        if _git("rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}").returncode == 0:
            return candidate
    return None


def file_at(ref: str, path: Path) -> str | None:
    """The text of `path` at `ref` (resolved as resolve_ref does), or None."""
    found = resolve_ref(ref)
    if found is None:
        return None
    shown = _git("show", f"{found}:{path.as_posix()}")
    return shown.stdout if shown.returncode == 0 else None


def remote_url() -> str:
    return _git("config", "--get", "remote.origin.url").stdout.strip()
