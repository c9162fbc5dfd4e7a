"""Serving throughput and latency, side by side on the same model, in one run.

Contenders, each loaded with the model trained by `make pipeline` (models/ and its MLflow run):
  * in-process predict_proba: single-row calls and 1000-row batches, in 1 and 2 processes
    (the ceiling a server without batching cannot pass on 2 cores);
  * `mlflow models serve --env-manager local`, with its default worker count and with ours;
  * `mlship serve`, 1 and 2 processes.
Load: wrk on 127.0.0.1 (16 connections, single-row requests over real test-set reviews;
2 connections with 1000-row requests), bounded in time. Same protocol for both servers:
MLflow's /invocations with `dataframe_split`.

Usage: .venv/bin/python benchmarks/serving.py [--seconds 10] [--workers 2]
Needs wrk (Debian: apt-get install wrk).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from mlship.errors import CheckError
from mlship.launch import free_port, wait_ready

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WRK_REPORT = """
done = function(summary, latency, requests)
  io.write(string.format('{"requests": %d, "seconds": %f, "errors": %d, "non2xx": %d, '
    .. '"p50_ms": %f, "p99_ms": %f}\\n', summary.requests, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, summary.errors.status,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def wrk_script(bodies: list[str], folder: Path) -> Path:
    lines = ["local bodies = {"]
    lines += [f"  [==[{body}]==]," for body in bodies]
    lines += [
        "}",
        "local i = 0",
        'wrk.method = "POST"',
        'wrk.headers["Content-Type"] = "application/json"',
        "request = function()",
        "  i = i % #bodies + 1",
        "  return wrk.format(nil, nil, nil, bodies[i])",
        "end",
        WRK_REPORT,
    ]
    path = folder / f"load{len(list(folder.iterdir()))}.lua"
    path.write_text("\n".join(lines))
    return path


def run_wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    subprocess.run(
        ["wrk", "-t2", f"-c{connections}", "-d2s", "-s", str(script), url],
        capture_output=True,
        check=True,
    )  # warm-up
    done = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    result["rps"] = result["requests"] / result["seconds"]
    return result


def start(
    command: list[str], ready_url: str, log: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        command, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=REPO,
        env={
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",  # mlflow execs `uvicorn`
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            **env,
        },
    )  # fmt: skip
    try:
        wait_ready(ready_url, 180, lambda: process.poll() is None)
    except CheckError as error:
        process.kill()
        sys.exit(f"{' '.join(command)}: {error}\n{log.read_text()[-2000:]}")
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def _in_process_worker(
    model_dir: str, rows: list[str], batch: int, seconds: float, out: object
) -> None:
    from mlship.artifacts import load_model

    pipeline = load_model(Path(model_dir))
    frame = pd.DataFrame({"review": (rows * (batch // len(rows) + 1))[:batch]})
    single = [frame.iloc[[i % len(frame)]] for i in range(64)]
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        if batch == 1:
            pipeline.predict_proba(single[done % 64])
            done += 1
        else:
            pipeline.predict_proba(frame)
            done += batch
    out.put(done / (time.perf_counter() - started))  # type: ignore[attr-defined]


def in_process(
    model_dir: Path, rows: list[str], batch: int, processes: int, seconds: float
) -> float:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_in_process_worker,
                               args=(str(model_dir), rows, batch, seconds, queue))
               for _ in range(processes)]  # fmt: skip
    for worker in workers:
        worker.start()
    total = sum(queue.get() for _ in workers)
    for worker in workers:
        worker.join()
    return float(total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model-dir", type=Path, default=REPO / "models")
    parser.add_argument("--test", type=Path, default=REPO / "data/raw/test.parquet")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    card = json.loads((args.model_dir / "model_card.json").read_text())
    model_uri = card["mlflow"]["model_uri"]
    tracking_uri = card["mlflow"]["tracking_uri"]
    reviews = pd.read_parquet(args.test)["review"].head(200).tolist()

    def split_body(texts: list[str]) -> str:
        return json.dumps(
            {"dataframe_split": {"columns": ["review"], "data": [[t] for t in texts]}}
        )

    results: list[tuple[str, str, float, float, float]] = []
    print(f"cores: {os.cpu_count()}; {args.seconds} s per load run; model: {args.model_dir}")
    for processes in (1, args.workers):
        rate = in_process(args.model_dir, reviews, 1, processes, args.seconds)
        results.append((f"in-process predict_proba x{processes}", "1 row/call", rate, 0, 0))
        rate = in_process(args.model_dir, reviews, 1000, processes, args.seconds)
        results.append((f"in-process predict_proba x{processes}", "1000 rows/call", rate, 0, 0))

    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        single = wrk_script([split_body([r]) for r in reviews], scratch)
        batch = wrk_script(
            [split_body((reviews * 5)[i : i + 1000]) for i in range(0, 200, 50)], scratch
        )

        def measure(label: str, url: str, batches: bool) -> None:
            """Single-row requests over 16 connections; with `batches`, 1000-row ones too."""
            r = run_wrk(url, single, 16, args.seconds)
            results.append((label, "1 row, 16 conns", r["rps"], r["p50_ms"], r["p99_ms"]))
            if batches:
                r = run_wrk(url, batch, 2, args.seconds)
                results.append(
                    (label, "1000 rows, 2 conns", r["rps"] * 1000, r["p50_ms"], r["p99_ms"])
                )

        contenders = [
            ("mlflow models serve (default)", []),
            (f"mlflow models serve -w {args.workers}", ["-w", str(args.workers)]),
        ]
        for label, extra in contenders:
            port = free_port()
            process = start(
                [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
                 "-h", "127.0.0.1", "-p", str(port), *extra],
                f"http://127.0.0.1:{port}/ping", scratch / "mlflow.log",
                {"MLFLOW_TRACKING_URI": tracking_uri},
            )  # fmt: skip
            try:
                measure(label, f"http://127.0.0.1:{port}/invocations", batches=bool(extra))
            finally:
                stop(process)
        for processes in (1, args.workers):
            port = free_port()
            process = start(
                [str(BIN / "mlship"), "serve", "--model", str(args.model_dir),
                 "--host", "127.0.0.1", "--port", str(port), "--workers", str(processes)],
                f"http://127.0.0.1:{port}/ready", scratch / "mlship.log", {},
            )  # fmt: skip
            try:
                measure(f"mlship serve --workers {processes}",
                        f"http://127.0.0.1:{port}/invocations",
                        batches=processes == args.workers)  # fmt: skip
            finally:
                stop(process)

    print("\n| contender | load | rows/s | p50 ms | p99 ms |\n|---|---|---:|---:|---:|")
    for label, load, rate, p50, p99 in results:
        latency = (f"{p50:.1f} | {p99:.1f}") if p50 else "— | —"
        print(f"| {label} | {load} | {rate:,.0f} | {latency} |")


if __name__ == "__main__":
    main()
