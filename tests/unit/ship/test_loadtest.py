import math
from pathlib import Path

import pandas as pd
import pytest

from mlship.card import Features, ModelCard
from mlship.config.params import LoadtestParams
from mlship.errors import InputError
from mlship.ship.image import plan
from mlship.ship.loadtest import aggregate, budget_criteria, markdown, request_rows

HEADER = "Type,Name,Request Count,Failure Count,Requests/s,50%,75%,90%,95%,99%,99.9%,100%\n"


def _stats(tmp_path: Path, aggregated: str) -> Path:
    path = tmp_path / "stats_stats.csv"
    path.write_text(HEADER + "POST,/predict 1 row,900,1,90,8,12,18,20,40,70,90\n" + aggregated)
    return path


def test_aggregate_reads_locusts_totals(tmp_path: Path) -> None:
    summary = aggregate(_stats(tmp_path, ",Aggregated,1000,5,100.5,9,14,20,25,60,80,95\n"))
    assert summary == {
        "requests": 1000.0,
        "failures": 5.0,
        "failure_ratio": 0.005,
        "rps": 100.5,
        "p50_ms": 9.0,
        "p75_ms": 14.0,
        "p90_ms": 20.0,
        "p95_ms": 25.0,
        "p99_ms": 60.0,
        "p99.9_ms": 80.0,
        "p100_ms": 95.0,
    }
    with pytest.raises(InputError, match="no Aggregated row"):
        aggregate(_stats(tmp_path, ""))


@pytest.mark.parametrize(
    ("change", "failed"),
    [
        ({}, []),
        ({"p95_ms": 150.0}, ["p95 latency <= 100.0 ms"]),
        ({"p99_ms": 300.0}, ["p99 latency <= 250.0 ms"]),
        ({"failure_ratio": 0.02}, ["failure ratio <= 0.01"]),
        ({"requests": 10.0}, ["requests >= 100"]),
        ({"p99_ms": math.nan}, ["p99 latency <= 250.0 ms"]),  # no data never passes
    ],
)
def test_budget(change: dict[str, float], failed: list[str]) -> None:
    summary = {
        "requests": 1000.0,
        "failures": 0.0,
        "failure_ratio": 0.0,
        "rps": 100.0,
        "p50_ms": 5.0,
        "p95_ms": 50.0,
        "p99_ms": 90.0,
        **change,
    }
    criteria = budget_criteria(summary, LoadtestParams())
    assert [c.name for c in criteria if not c.passed] == failed
    verdict = "PASSED" if not failed else "FAILED"
    assert markdown(summary, criteria, "http://127.0.0.1:1").startswith(
        f"## mlship load test: {verdict}"
    )


def test_request_rows_are_json_with_nulls() -> None:
    frame = pd.DataFrame({"island": ["a", None], "mass": [1.5, float("nan")], "y": ["x", "y"]})
    assert request_rows(frame, ("island", "mass")) == [
        {"island": "a", "mass": 1.5},
        {"island": None, "mass": None},
    ]


def test_image_plan_tags_and_labels() -> None:
    lock = "a4" * 32  # the sha256 of dvc.lock
    bare = ModelCard(features=Features(text=("review",)), target="score")
    card = bare.updated(mlflow={"run_id": "r1"}, registry={"name": "reviews", "version": "7"})
    made = plan(
        "127.0.0.1:5001/",
        "mlship",
        "fallback",
        "0123456789abcdef",
        card,
        lock,
        "https://example.invalid/r.git",
        "2026-01-01T00:00:00+00:00",
        "base:1",
    )
    assert made.references == [
        "127.0.0.1:5001/mlship:0123456789ab-m7",
        "127.0.0.1:5001/mlship:0123456789ab",
    ]
    assert made.build_args["MODEL_NAME"] == "reviews" and made.build_args["RUN_ID"] == "r1"
    assert len(made.build_args["DVC_LOCK_SHA256"]) == 64
    local = plan("r", "mlship", "mlship-model", "unknown", bare, "", "", "", "base")
    assert local.tags == ("unknown-mlocal", "unknown")
    assert local.build_args["MODEL_NAME"] == "mlship-model"
