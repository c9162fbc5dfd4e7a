"""What DVC knows about the pipeline: which stages are stale."""

from __future__ import annotations

from pathlib import Path

from mlship.errors import InputError


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
