"""The trusted-type lists mlship hands skops from its file are skops' own, for the installed
versions; a file for other versions is never read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlship.pipeline import skops_names


def test_the_saved_lists_are_skops_own(tmp_path: Path) -> None:
    saved = json.loads(skops_names.save_names(tmp_path).read_text())
    assert saved == skops_names.compute_names()
    assert len(saved["SKLEARN_ESTIMATOR_TYPE_NAMES"]) > 100  # every estimator, not a few


def test_a_process_started_with_the_file_trusts_what_skops_trusts(tmp_path: Path) -> None:
    skops_names.save_names(tmp_path)
    probe = (
        "import json, sys\n"
        "from mlship.pipeline.skops_names import import_skops\n"
        "sio = import_skops()\n"
        "from skops.io import _trusted_types as names\n"
        "print(json.dumps({'stand_in': 'mlship' in (names.__doc__ or ''),\n"
        "                  'estimators': len(names.SKLEARN_ESTIMATOR_TYPE_NAMES)}))\n"
    )
    env = {"MLSHIP_SKOPS_NAMES_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=env, check=True)  # fmt: skip
    found = json.loads(done.stdout)
    assert found["stand_in"] is True
    assert found["estimators"] == len(skops_names.compute_names()["SKLEARN_ESTIMATOR_TYPE_NAMES"])


def test_the_file_is_keyed_by_every_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLSHIP_SKOPS_NAMES_DIR", str(tmp_path))
    assert skops_names.names_file().parent == tmp_path
    assert "scikit-learn" in skops_names.names_file().name  # keyed by every version
