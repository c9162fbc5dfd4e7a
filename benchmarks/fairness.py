"""Single-row latency while large requests run, for a few chunk sizes of the batcher.

Two clients send 2,000-row /predict requests back to back while one client sends single-row
requests; the server (`mlship serve --workers 1`, the model in models/) cuts large requests
into chunks of MLSHIP_BATCH_CHUNK_ROWS rows, each model call taking every waiting small
request and at most one chunk. 2000 means no chunking (the old behaviour: a single-row
request waits for whole large requests).

Usage: .venv/bin/python benchmarks/fairness.py [--seconds 10] [--model models]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd

from mlship.ship.launch import free_port, wait_ready

BIN = Path(sys.executable).parent


async def single_rows(url: str, row: dict[str, object], seconds: float) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            (await client.post("/predict", json=row)).raise_for_status()
            latencies.append(time.perf_counter() - started)
    return latencies


async def large(url: str, rows: list[dict[str, object]], seconds: float) -> int:
    done = 0
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            (await client.post("/predict", json=rows)).raise_for_status()
            done += 1
    return done


async def measure(url: str, rows: list[dict[str, object]], seconds: float) -> dict[str, float]:
    small, first, second = await asyncio.gather(
        single_rows(url, rows[0], seconds), large(url, rows, seconds), large(url, rows, seconds)
    )
    small_ms = sorted(s * 1e3 for s in small)
    return {
        "single_rows": len(small),
        "p50_ms": statistics.median(small_ms),
        "p99_ms": small_ms[min(len(small_ms) - 1, int(len(small_ms) * 0.99))],
        "large_rows_per_s": (first + second) * len(rows) / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--model", type=Path, default=Path("models"))
    parser.add_argument("--test", type=Path, default=Path("data/raw/test.parquet"))
    args = parser.parse_args()
    card = json.loads((args.model / "model_card.json").read_text())
    columns = [c for kind in ("text", "categorical", "numeric") for c in card["features"][kind]]
    test = pd.read_parquet(args.test)[columns].dropna()
    records = json.loads(test.to_json(orient="records"))
    rows = (records * (2000 // len(records) + 1))[:2000]
    print(
        "| chunk rows | single-row p50 ms | single-row p99 ms | single rows | "
        "large rows/s |\n|---:|---:|---:|---:|---:|"
    )
    for chunk in (2000, 512, 256, 64):
        port = free_port()
        env = {**os.environ, "MLSHIP_BATCH_CHUNK_ROWS": str(chunk)}
        server = subprocess.Popen(
            [
                str(BIN / "mlship"),
                "serve",
                "--model",
                str(args.model),
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(f"{url}/ready", 120, lambda process=server: process.poll() is None)
            found = asyncio.run(measure(url, rows, args.seconds))
        finally:
            server.terminate()
            server.wait(30)
        print(
            f"| {chunk}{' (no chunking)' if chunk == 2000 else ''} | {found['p50_ms']:.1f} | "
            f"{found['p99_ms']:.1f} | {found['single_rows']:.0f} | "
            f"{found['large_rows_per_s']:,.0f} |"
        )


if __name__ == "__main__":
    main()
