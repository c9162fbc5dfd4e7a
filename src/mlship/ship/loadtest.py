"""Run locust headless for a bounded time and judge the result against the budget."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from mlship.config.params import LoadtestParams
from mlship.errors import InputError
from mlship.gate.criteria import Criterion

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


def request_rows(
    test: pd.DataFrame, columns: tuple[str, ...], limit: int = 500
) -> list[dict[str, Any]]:
    """Feature rows as a client would send them: JSON values, gaps as null."""
    rows = test[list(columns)].head(limit)
    return [
        {k: (None if pd.isna(v) else v) for k, v in record.items()}
        for record in json.loads(rows.to_json(orient="records"))
    ]


def _locust(url: str, budget: LoadtestParams, seconds: int, log_level: str) -> list[str]:
    """Headless locust with the budget's users against `url` for `seconds`, the summary only."""
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        url,
        "--users",
        str(budget.users),
        "--spawn-rate",
        str(budget.spawn_rate),
        "--run-time",
        f"{seconds}s",
        "--only-summary",
        "--loglevel",
        log_level,
    ]


def run_locust(url: str, rows_file: Path, budget: LoadtestParams, out: Path, html: Path) -> Path:
    """Run locust; returns the aggregated stats CSV."""
    prefix = out / "stats"
    command = [
        *_locust(url, budget, budget.duration_seconds, "WARNING"),
        "--stop-timeout",
        "5",
        "--csv",
        str(prefix),
        "--html",
        str(html),
        "--exit-code-on-error",
        "0",
    ]
    env = {**os.environ, "MLSHIP_LOADTEST_ROWS": str(rows_file)}
    try:
        done = subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=budget.duration_seconds + 120,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise InputError(
            f"locust did not finish within {budget.duration_seconds + 120} s"
        ) from error
    stats = Path(f"{prefix}_stats.csv")
    if done.returncode != 0 or not stats.is_file():
        raise InputError(f"locust failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return stats


@contextmanager
def background_load(
    url: str, rows: list[dict[str, Any]], budget: LoadtestParams, at_most_seconds: float
) -> Iterator[None]:
    """Locust sending `rows` to `url` with the budget's users while the block runs (and
    never longer than `at_most_seconds`): traffic for a canary to be judged on."""
    with tempfile.TemporaryDirectory(prefix="mlship-load-") as scratch:
        rows_file = Path(scratch) / "rows.json"
        rows_file.write_text(json.dumps(rows), encoding="utf-8")
        command = _locust(url, budget, max(1, int(at_most_seconds)), "ERROR")
        env = {**os.environ, "MLSHIP_LOADTEST_ROWS": str(rows_file)}
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


PERCENTILES = ("50%", "75%", "90%", "95%", "99%", "99.9%", "100%")  # columns of locust's CSV


def aggregate(stats_csv: Path) -> dict[str, float]:
    with stats_csv.open(newline="") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    total = rows.get("Aggregated")
    if total is None:
        raise InputError(f"{stats_csv}: no Aggregated row")

    def number(key: str) -> float:
        value = total.get(key, "")
        return float(value) if value not in ("", "N/A") else float("nan")

    requests = number("Request Count")
    failures = number("Failure Count")
    percentiles = {f"p{name.rstrip('%')}_ms": number(name) for name in PERCENTILES}
    return {
        "requests": requests,
        "failures": failures,
        "failure_ratio": failures / requests if requests else 1.0,
        "rps": number("Requests/s"),
        **percentiles,
    }


def budget_criteria(summary: dict[str, float], budget: LoadtestParams) -> list[Criterion]:
    def check(name: str, value: float, limit: float, at_most: bool = True) -> Criterion:
        ok = value == value and (value <= limit if at_most else value >= limit)  # NaN fails
        relation = ("<=" if ok else ">") if at_most else (">=" if ok else "<")
        return Criterion("loadtest", name, ok, f"{value:,.4g} {relation} {limit}", value, limit)

    return [
        check(
            f"requests >= {budget.min_requests}",
            summary["requests"],
            budget.min_requests,
            at_most=False,
        ),
        check(f"p95 latency <= {budget.max_p95_ms} ms", summary["p95_ms"], budget.max_p95_ms),
        check(f"p99 latency <= {budget.max_p99_ms} ms", summary["p99_ms"], budget.max_p99_ms),
        check(
            f"failure ratio <= {budget.max_failure_ratio}",
            summary["failure_ratio"],
            budget.max_failure_ratio,
        ),
    ]


def markdown(summary: dict[str, float], criteria: list[Criterion], target: str) -> str:
    verdict = "PASSED" if all(c.passed for c in criteria) else "FAILED"
    lines = [
        f"## mlship load test: {verdict}",
        "",
        f"Target: {target}. {summary['requests']:.0f} requests at {summary['rps']:.0f} req/s; "
        f"p50 {summary['p50_ms']:.0f} ms, p95 {summary['p95_ms']:.0f} ms, "
        f"p99 {summary['p99_ms']:.0f} ms; {summary['failures']:.0f} failures.",
        "",
        "| | criterion | measured |",
        "|---|---|---|",
    ]
    lines += [f"| {'✅' if c.passed else '❌'} | {c.name} | {c.detail} |" for c in criteria]
    return "\n".join(lines) + "\n"
