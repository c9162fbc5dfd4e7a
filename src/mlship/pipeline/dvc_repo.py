"""What DVC knows about the pipeline: which stages are stale, and the metric diff."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mlship.errors import InputError
from mlship.vcs import resolve_ref


def stale_stages(dvc_file: Path) -> list[str]:
    """Stages whose code, params, data or outputs differ from dvc.lock (empty: fresh)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(dvc_file.resolve().parent)) as repo:
            status = repo.status()
    except DvcException as error:
        raise InputError(f"{dvc_file}: cannot read the pipeline state: {error}") from error
    return sorted(status)


def metrics_diff(base_ref: str) -> str | None:
    """`dvc metrics diff` against the base ref as a Markdown table; None without one."""
    ref = resolve_ref(base_ref)
    if ref is None:
        return None
    diff = subprocess.run(
        [sys.executable, "-m", "dvc", "metrics", "diff", "--md", "--all", "--precision", "4", ref],
        capture_output=True,
        text=True,
        check=False,
    )
    return diff.stdout if diff.returncode == 0 and diff.stdout.strip() else None
