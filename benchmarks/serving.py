"""Serving throughput and latency beside the peers, one table per model, in one run.

Models (trained here from the shipped params, in a temporary project): the default text
classifier, the penguins gradient-boosting classifier (tabular) and the Ames
gradient-boosting regressor. Every server gets the same fitted pipeline (mlship's skops
file; a joblib file of the same object for the peers) and the same test-set rows.

Contenders:
  * in-process predict (the pipeline itself, 1 and 2 processes): the ceilings;
  * mlship serve, 1 and 2 processes, Open Inference Protocol V2;
  * MLServer 1.7.1's scikit-learn runtime (V2, pandas content type), with and without
    adaptive batching (max_batch_size 32, max_batch_time 2 ms), 2 workers;
  * BentoML 1.4.38, a batchable API, 2 workers;
  * mlflow models serve -w 2 (/invocations, dataframe_split).
Peers run from their own virtual environments under ~/.cache/mlship-bench (created on
first use; never project dependencies), with the scikit-learn, pandas and NumPy versions of
this project. Load: wrk on 127.0.0.1 sharing the 2 cores, single-row requests over 16
connections, 1000-row requests over 8; bounded in time.

Usage: .venv/bin/python benchmarks/serving.py [--seconds 10] [--models text,tabular,regression]
       [--skip-peers] [--image REF]   (needs wrk: apt-get install wrk)
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
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mlship.config.params import parse_params
from mlship.config.settings import Settings
from mlship.errors import CheckError
from mlship.paths import PipelinePaths
from mlship.ship.launch import free_port, wait_ready
from mlship.stages import pipeline

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PEERS = Path.home() / ".cache" / "mlship-bench"
MODELS = {
    "text": REPO / "examples/reviews/params.yaml",
    "tabular": REPO / "examples/penguins/params.yaml",
    "regression": REPO / "examples/regression/params.yaml",
}
# Every server and the in-process ceilings get one native thread per process (mlship sets it
# for its own processes): with OpenMP's default, MLServer's forked workers hung on the tree
# model and every 2-process server oversubscribed the 2 cores.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
PEER_PACKAGES = {
    # uvloop 0.21+ breaks MLServer 1.7.1's parallel workers (no current event loop)
    "mlserver": ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop<0.21"],
    "bentoml": ["bentoml==1.4.38"],
}
# 1000-row requests over 8 connections: the kernel hashes each connection to one of the
# SO_REUSEPORT processes, so with n connections all land on one of two processes with
# probability 2^(1-n) (4 connections: one load in 8 measured a single process)
LARGE_CONNECTIONS = 8
WRK_REPORT = """
done = function(summary, latency, requests)
  io.write(string.format('{"requests": %d, "seconds": %f, "errors": %d, "non2xx": %d, '
    .. '"p50_ms": %f, "p99_ms": %f}\\n', summary.requests, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, summary.errors.status,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


@dataclass
class Model:
    name: str
    folder: Path  # mlship's model directory
    pickle: Path  # the same fitted object, for the peers
    model_uri: str  # the MLflow logged model
    tracking_uri: str
    task: str
    features: dict[str, list[str]]
    rows: list[dict[str, Any]]  # test-set rows without gaps, JSON values


@dataclass
class Result:
    contender: str
    load: str
    rows_per_s: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    non_2xx: int | None = None
    rss_mb: float | None = None


# --- the models ------------------------------------------------------------------------


def _without_mlship(model: Any) -> Any:
    """The same fitted pipeline with scikit-learn's own classes only, for the peers' pickle
    (their environments have no mlship): TextVectorizer differs from TfidfVectorizer only in
    how skops saves it."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from mlship.pipeline.features import TextVectorizer

    for _, step in getattr(model, "steps", []):
        # the fitted transformers and the unfitted ones the ColumnTransformer was built with
        for listed in ("transformers_", "transformers"):
            for _, transformer, _ in getattr(step, listed, []):
                if isinstance(transformer, TextVectorizer):
                    transformer.__class__ = TfidfVectorizer
    return model


def train(name: str, params_file: Path, root: Path) -> Model:
    """ingest -> validate -> train -> evaluate in process, in a throw-away project."""
    import joblib

    from mlship.pipeline.artifacts import load_model

    folder = root / name
    folder.mkdir()
    raw = yaml.safe_load(params_file.read_text())
    params = parse_params(raw, params_file)
    shutil.copy(REPO / "dvc.yaml", folder / "dvc.yaml")
    paths = PipelinePaths.read(folder / "dvc.yaml")
    settings = Settings(  # type: ignore[call-arg]
        tracking_uri=f"sqlite:///{folder}/mlflow.db", model_name=params.name
    )
    here = Path.cwd()
    os.chdir(folder)
    try:
        pipeline.ingest(params, paths.train, paths.test, paths.ingest_report)
        pipeline.validate(params, paths.train, paths.test, paths.contract_json, paths.contract_md)
        card = pipeline.train(params, settings, paths.train, paths.model_dir)
        pipeline.evaluate(
            params, settings, paths.model_dir, paths.test, pipeline.EvaluationFiles.of(paths)
        )
    finally:
        os.chdir(here)
    joblib.dump(_without_mlship(load_model(paths.model_dir, card)), folder / "model.joblib")
    columns = [*card.features.text, *card.features.categorical, *card.features.numeric]
    test = pd.read_parquet(paths.test)[columns].dropna()
    assert card.mlflow is not None and card.mlflow.model_uri is not None
    return Model(
        name,
        paths.model_dir,
        folder / "model.joblib",
        card.mlflow.model_uri,
        settings.tracking_uri,
        card.task,
        {
            "text": list(card.features.text),
            "categorical": list(card.features.categorical),
            "numeric": list(card.features.numeric),
        },
        json.loads(test.head(500).to_json(orient="records")),
    )


def v2_inputs(model: Model, rows: list[dict[str, Any]], pandas: bool) -> list[dict[str, Any]]:
    numeric = set(model.features["numeric"])
    inputs = []
    for kind in ("text", "categorical", "numeric"):
        for column in model.features[kind]:
            tensor: dict[str, Any] = {
                "name": column,
                "shape": [len(rows)],
                "datatype": "FP64" if column in numeric else "BYTES",
                "data": [row[column] for row in rows],
            }
            if pandas and column not in numeric:  # MLServer decodes BYTES to str this way
                tensor["parameters"] = {"content_type": "str"}
            inputs.append(tensor)
    return inputs


def bodies(model: Model, style: str, size: int) -> list[str]:
    """Request bodies of `size` rows each, cycling through the test rows."""
    rows = model.rows * (size // len(model.rows) + 2)
    starts = range(min(len(model.rows), 200)) if size == 1 else range(0, 200, 50)
    chunks = [rows[start : start + size] for start in starts]
    made = []
    for chunk in chunks:
        if style == "mlship":
            made.append({"inputs": v2_inputs(model, chunk, pandas=False)})
        elif style == "mlserver":
            wanted = "predict_proba" if model.task == "classification" else "predict"
            made.append(
                {
                    "parameters": {"content_type": "pd"},
                    "outputs": [{"name": wanted}],
                    "inputs": v2_inputs(model, chunk, pandas=True),
                }
            )
        elif style == "bentoml":
            made.append({"rows": chunk})
        else:  # mlflow
            columns = list(chunk[0])
            data = [[r[c] for c in columns] for r in chunk]
            made.append({"dataframe_split": {"columns": columns, "data": data}})
    return [json.dumps(body) for body in made]


# --- load ---------------------------------------------------------------------------------


def wrk_script(payloads: list[str], folder: Path) -> Path:
    lines = [
        "local bodies = {",
        *(f"  [==[{p}]==]," for p in payloads),
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
    path = folder / f"load{len(list(folder.glob('*.lua')))}.lua"
    path.write_text("\n".join(lines))
    return path


def wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    command = ["wrk", "-t2", f"-c{connections}", "-s", str(script), url]
    subprocess.run([*command[:3], "-d2s", *command[3:]], capture_output=True, check=True)
    done = subprocess.run(
        [*command[:3], f"-d{seconds}s", *command[3:]], capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    result["rps"] = result["requests"] / result["seconds"]
    return result


def rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(
                next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
            )
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue
    return total / 1024


class Server:
    def __init__(self, command: list[str], probe: str, folder: Path, env: dict[str, str]):
        self.log = folder / f"server-{time.monotonic_ns()}.log"
        self.process = subprocess.Popen(
            command,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            cwd=folder,
            env={
                **os.environ,
                "PATH": f"{Path(command[0]).parent}{os.pathsep}{os.environ['PATH']}",
                "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
                **ONE_THREAD,
                **env,
            },
            start_new_session=True,
        )
        try:
            wait_ready(probe, 300, lambda: self.process.poll() is None)
        except CheckError as error:
            self.stop()
            tail = self.log.read_text()[-3000:]
            raise SystemExit(f"{' '.join(command)}: {error}\n{tail}") from error

    def stop(self) -> None:
        os.killpg(self.process.pid, 15)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)


def run_loads(
    label: str, server: Server, url: str, single: Path, batch: Path | None, seconds: int
) -> list[Result]:
    found = []
    for script, connections, size in ((single, 16, 1), (batch, LARGE_CONNECTIONS, 1000)):
        if script is None:
            continue
        r = wrk(url, script, connections, seconds)
        found.append(
            Result(
                label,
                f"{size} row{'s' if size > 1 else ''}, {connections} conns",
                r["rps"] * size,
                r["p50_ms"],
                r["p99_ms"],
                int(r["non2xx"]),
                rss_mb(server.process.pid),
            )
        )
    return found


# --- contenders ---------------------------------------------------------------------------


def _in_process_worker(
    model_dir: str, rows: list[dict[str, Any]], batch: int, seconds: float, threads: int, out: Any
) -> None:
    from threadpoolctl import threadpool_limits

    from mlship.card import ModelCard
    from mlship.pipeline.evaluate import scorer
    from mlship.pipeline.features import feature_frame
    from mlship.serving.model import data_params

    threadpool_limits(threads)
    card = ModelCard.load(Path(model_dir))
    from mlship.pipeline.artifacts import load_model

    call = scorer(load_model(Path(model_dir), card), card.task)
    frame = feature_frame(
        pd.DataFrame((rows * (batch // len(rows) + 1))[:batch]), data_params(card)
    )
    single = [frame.iloc[[i % len(frame)]] for i in range(64)]
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        if batch == 1:
            call(single[done % 64])
            done += 1
        else:
            call(frame)
            done += batch
    out.put(done / (time.perf_counter() - started))


def in_process(model: Model, batch: int, processes: int, seconds: float) -> float:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    threads = max(1, (os.cpu_count() or 1) // processes)
    workers = [
        context.Process(
            target=_in_process_worker,
            args=(str(model.folder), model.rows, batch, seconds, threads, queue),
        )
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    total = sum(queue.get() for _ in workers)
    for worker in workers:
        worker.join()
    return float(total)


def peer_python(name: str) -> Path:
    """The peer's own virtual environment, created on first use."""
    folder = PEERS / name
    python = folder / "bin" / "python"
    if not python.exists():
        import numpy
        import sklearn

        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        pins = [
            f"scikit-learn=={sklearn.__version__}",
            f"pandas=={pd.__version__}",
            f"numpy=={numpy.__version__}",
            "joblib",
        ]
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES[name], *pins], check=True
        )
    return python


def mlserver(model: Model, folder: Path, batching: bool) -> tuple[Server, str]:
    python = peer_python("mlserver")
    settings = folder / f"mlserver-{model.name}-{int(batching)}"
    (settings / "model").mkdir(parents=True)
    shutil.copy(model.pickle, settings / "model" / "model.joblib")
    extra = {"max_batch_size": 32, "max_batch_time": 0.002} if batching else {}
    (settings / "model" / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "model",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib"},
                **extra,
            }
        )
    )
    port = free_port()
    (settings / "settings.json").write_text(
        json.dumps(
            {
                "http_port": port,
                "grpc_port": free_port(),
                "metrics_port": free_port(),
                "parallel_workers": 2,
                "host": "127.0.0.1",
            }
        )
    )
    server = Server(
        [str(python.parent / "mlserver"), "start", str(settings)],
        f"http://127.0.0.1:{port}/v2/models/model/ready",
        settings,
        {},
    )
    return server, f"http://127.0.0.1:{port}/v2/models/model/infer"


BENTO_SERVICE = """
import bentoml, joblib, pandas as pd

@bentoml.service(workers=2)
class Model:
    def __init__(self):
        self.model = joblib.load({pickle!r})

    @bentoml.api(batchable=True, max_batch_size=2000, max_latency_ms=5000)
    def predict(self, rows: list[dict]) -> list:
        frame = pd.DataFrame(rows)
        answer = self.model.{call}(frame)
        return answer.tolist()
"""


def bentoml(model: Model, folder: Path) -> tuple[Server, str]:
    python = peer_python("bentoml")
    service = folder / f"bento-{model.name}"
    service.mkdir()
    call = "predict_proba" if model.task == "classification" else "predict"
    (service / "service.py").write_text(
        textwrap.dedent(BENTO_SERVICE).format(pickle=str(model.pickle), call=call)
    )
    port = free_port()
    server = Server(
        [
            str(python.parent / "bentoml"),
            "serve",
            "service:Model",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        f"http://127.0.0.1:{port}/readyz",
        service,
        {"BENTOML_DO_NOT_TRACK": "True"},
    )
    return server, f"http://127.0.0.1:{port}/predict"


def mlflow_serve(model: Model, folder: Path) -> tuple[Server, str]:
    port = free_port()
    server = Server(
        [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            model.model_uri,
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            "2",
        ],
        f"http://127.0.0.1:{port}/ping",
        folder,
        {"MLFLOW_TRACKING_URI": model.tracking_uri},
    )
    return server, f"http://127.0.0.1:{port}/invocations"


def mlship(model: Model, folder: Path, workers: int) -> tuple[Server, str]:
    port = free_port()
    server = Server(
        [
            str(BIN / "mlship"),
            "serve",
            "--model",
            str(model.folder),
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        f"http://127.0.0.1:{port}/ready",
        folder,
        {},
    )
    return server, f"http://127.0.0.1:{port}/v2/models/mlship-model/infer"


def benchmark(model: Model, seconds: int, peers: bool, folder: Path) -> list[Result]:
    results = []
    for processes in (1, 2):
        for batch in (1, 1000):
            rate = in_process(model, batch, processes, seconds)
            results.append(
                Result(
                    f"in-process x{processes}", f"{batch} row{'s' if batch > 1 else ''}/call", rate
                )
            )
    scripts = folder / f"wrk-{model.name}"
    scripts.mkdir()
    contenders: list[tuple[str, Callable[[], tuple[Server, str]], str, bool]] = [
        ("mlship serve --workers 1", lambda: mlship(model, folder, 1), "mlship", False),
        ("mlship serve --workers 2", lambda: mlship(model, folder, 2), "mlship", True),
    ]
    if peers:
        contenders += [
            ("MLServer 1.7.1, 2 workers", lambda: mlserver(model, folder, False), "mlserver", True),
            (
                "MLServer 1.7.1, 2 workers, adaptive batching",
                lambda: mlserver(model, folder, True),
                "mlserver",
                True,
            ),
            (
                "BentoML 1.4.38, 2 workers, batchable",
                lambda: bentoml(model, folder),
                "bentoml",
                True,
            ),
            ("mlflow models serve -w 2", lambda: mlflow_serve(model, folder), "mlflow", True),
        ]
    for label, start, style, large in contenders:
        single = wrk_script(bodies(model, style, 1), scripts)
        batch = wrk_script(bodies(model, style, 1000), scripts) if large else None
        server, url = start()
        try:
            results += run_loads(label, server, url, single, batch, seconds)
        finally:
            server.stop()
    return results


def table(model: Model, results: list[Result]) -> str:
    peers = ("MLServer", "BentoML", "mlflow")
    best = {
        load: max(
            (r.rows_per_s for r in results if r.load == load and r.contender.startswith(peers)),
            default=0.0,
        )
        for load in {r.load for r in results}
    }
    columns = ", ".join(c for kind in model.features.values() for c in kind)
    lines = [
        f"\n{model.name} ({model.task}; {columns})",
        "",
        "| contender | load | rows/s | p50 ms | p99 ms | non-2xx | RSS MB | vs best peer |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ratio = f"{r.rows_per_s / best[r.load]:.1f}x" if best.get(r.load) else ""
        cells = (
            [r.contender, r.load, f"{r.rows_per_s:,.0f}"]
            + [
                "—" if v is None else (f"{v:.1f}" if isinstance(v, float) else str(v))
                for v in (r.p50_ms, r.p99_ms, r.non_2xx, r.rss_mb)
            ]
            + [ratio]
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cold_start(reference: str) -> str:
    """Seconds from `docker run` to /ready, and the image size."""
    from mlship.ship import image, launch

    client = image.engine()
    size = client.images.get(reference).attrs.get("Size", 0) / 1e6
    port = free_port()
    started = time.monotonic()
    container = launch.run_container(client, reference, port)
    try:
        wait_ready(f"http://127.0.0.1:{port}/ready", 120, lambda: launch.container_alive(container))
        ready = time.monotonic() - started
    finally:
        container.remove(force=True)
    return f"\nimage {reference}: {size:.0f} MB; container start to /ready {ready:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--image", help="also time this image's cold start and report its size")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    print(f"cores: {os.cpu_count()}; {args.seconds} s per load")
    with tempfile.TemporaryDirectory(prefix="mlship-bench-") as scratch:
        root = Path(scratch)
        for name in args.models.split(","):
            model = train(name, MODELS[name], root)
            print(
                table(model, benchmark(model, args.seconds, not args.skip_peers, root)), flush=True
            )
    if args.image:
        print(cold_start(args.image))


if __name__ == "__main__":
    main()
