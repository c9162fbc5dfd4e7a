"""The committed dvc.lock describes the committed code and params.

dvc.lock records what each stage ran with: the digests of its code and the params it
reads. `make train` rewrites it; commit it with the change that made it (a params edit, a
change to your model code). A stale dvc.lock makes the next `dvc repro` run stages again
that need not, and the gate refuses a model evaluated under another lock."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO


def _outputs() -> set[str]:
    """Every path a stage writes (outputs, metrics, plots), as dvc.yaml names them."""
    document = yaml.safe_load((REPO / "dvc.yaml").read_text())
    declared = document["vars"][0]["paths"]
    written: set[str] = set()
    for stage in document["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                name = next(iter(entry)) if isinstance(entry, dict) else entry
                for key, value in declared.items():
                    name = name.replace(f"${{paths.{key}}}", str(value))
                written.add(name)
    return written


def test_the_committed_dvc_lock_is_current() -> None:
    dvc = Path(sys.executable).with_name("dvc")
    done = subprocess.run(
        [str(dvc), "status", "--json"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    written = _outputs()
    stale = []
    for stage, changes in json.loads(done.stdout or "{}").items():
        for change in changes:
            if not isinstance(change, dict):
                continue
            for path, what in change.get("changed deps", {}).items():
                if path not in written:  # code and params; the data comes from the stages
                    stale.append(f"{stage}: {path} {what}")
    assert not stale, (
        "dvc.lock does not describe the code and params committed with it: "
        + "; ".join(stale)
        + ". Run `make train` and commit dvc.lock with the change."
    )
