"""How fast a new server takes traffic, beside the peers, in one run: one table.

For each model (the text, tabular and regression examples, trained here as in serving.py):
the seconds from starting the process to its readiness probe answering 200 — mlship serve
with 1 and 2 processes (/ready: every process can score), and with 2 on the model signed
(the signature checked at start, MLSHIP_SIGNATURES=required), MLServer 1.7.1 and BentoML
1.4.38 on the same fitted pipeline (their own readiness probes), all with one native thread
per process — the median of --starts runs, and the resident memory of the whole process
tree at that moment. Beside them the floor: a Python process that only imports FastAPI and
uvicorn and unpickles the model, to its exit (see floor()). With --image: the seconds from
starting a container of that image to /ready (and, apart, from creating it), and its size by
layer group (base, system setup, the environment with mlship, the model).

Usage: .venv/bin/python benchmarks/startup.py [--starts 5] [--models text,tabular,regression]
       [--skip-peers] [--image REF]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving as bench
from mlship.ship.launch import free_port

Command = tuple[list[str], str, dict[str, str], Path]  # argv, readiness URL, env, cwd


@dataclass
class Start:
    contender: str
    model: str
    seconds: list[float]
    rss_mb: float

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def time_start(command: Command, timeout: float = 120) -> tuple[float, float]:
    """Seconds from Popen to the readiness URL's first 200, and the tree's RSS then."""
    argv, probe, env, cwd = command
    started = time.perf_counter()
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        stdout=subprocess.DEVNULL if probe else subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **bench.ONE_THREAD, **env},
        start_new_session=True,
    )
    if not probe:  # the floor: done when it exits, saying its resident pages
        pages, _ = process.communicate(timeout=timeout)
        took = time.perf_counter() - started
        if process.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited with {process.returncode}")
        return took, int(pages) * os.sysconf("SC_PAGE_SIZE") / 2**20
    try:
        with httpx.Client(timeout=2) as client:
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"{argv[0]} exited with {process.returncode}")
                try:
                    if client.get(probe).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.perf_counter() - started > timeout:
                    raise SystemExit(f"{' '.join(argv)}: not ready after {timeout} s")
                time.sleep(0.01)
        return time.perf_counter() - started, bench.rss_mb(process.pid)
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


FLOOR = """
import gc, os
gc.disable()
import fastapi, joblib, uvicorn, uvloop
joblib.load({pickle!r})
with open("/proc/self/statm") as statm:  # resident pages, as the servers' rows at ready
    os.write(1, statm.read().split()[1].encode())
os._exit(0)
"""


def floor(model: bench.Model, folder: Path) -> Command:
    """The least a Python server of this model does before it can answer: start the
    interpreter, import FastAPI and uvicorn and unpickle the model (which imports the
    scikit-learn modules it needs) — no server, no safe loading, no checks; the collector
    off and one native thread, as in mlship's start. No server of this model on FastAPI and
    uvicorn (mlship's, MLServer's) starts faster than this here."""
    return [sys.executable, "-c", FLOOR.format(pickle=str(model.pickle))], "", {}, folder


def mlship(model: bench.Model, workers: int, folder: Path) -> Command:
    port = free_port()
    argv = [
        str(bench.BIN / "mlship"),
        "serve",
        "--model",
        str(model.folder),
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    return argv, f"http://127.0.0.1:{port}/ready", {}, folder


def mlship_signed(model: bench.Model, workers: int, folder: Path) -> Command:
    """mlship serve on the same model signed (with a provenance beside it) under the
    `required` policy: the start pays for the signature check — the keys, the ECDSA
    verifications and every signed file's sha256 — before anything is deserialised."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from mlship.pipeline import signatures

    signed = folder / f"signed-{model.name}"
    public = folder / f"signed-{model.name}.pub"
    if not signed.exists():
        shutil.copytree(model.folder, signed)
        key = ec.generate_private_key(ec.SECP256R1())
        statement = signatures.model_statement(signatures.directory_files(signed).digests())
        root = statement["subject"][0]["digest"]["sha256"]
        gate = {"verdict": "passed", "report_sha256": "0" * 64}
        provenance = signatures.provenance_statement(
            root, {"buildDefinition": {"internalParameters": {"gate": gate}}}
        )
        (signed / signatures.SIGNATURE_FILE).write_bytes(signatures.sign_statement(statement, key))
        (signed / signatures.PROVENANCE_FILE).write_bytes(
            signatures.sign_statement(provenance, key)
        )
        public.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    argv, probe, _, cwd = mlship(model, workers, folder)
    argv[argv.index(str(model.folder))] = str(signed)
    trust = {"MLSHIP_TRUSTED_KEYS": str(public), "MLSHIP_SIGNATURES": "required"}
    return argv, probe, trust, cwd


def mlserver(model: bench.Model, folder: Path) -> Command:
    """MLServer's scikit-learn runtime, 2 workers, as serving.py configures it."""
    settings = folder / f"mlserver-start-{model.name}"
    if not settings.exists():
        (settings / "model").mkdir(parents=True)
        (settings / "model" / "model.joblib").write_bytes(model.pickle.read_bytes())
        (settings / "model" / "model-settings.json").write_text(
            json.dumps(
                {
                    "name": "model",
                    "implementation": "mlserver_sklearn.SKLearnModel",
                    "parameters": {"uri": "./model.joblib"},
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
    python = bench.peer_python("mlserver")
    argv = [str(python.parent / "mlserver"), "start", str(settings)]
    return argv, f"http://127.0.0.1:{port}/v2/models/model/ready", {}, settings


def bentoml(model: bench.Model, folder: Path) -> Command:
    """A BentoML service with 2 workers around the same pipeline, as serving.py has it."""
    service = folder / f"bento-start-{model.name}"
    if not service.exists():
        service.mkdir()
        call = "predict_proba" if model.task == "classification" else "predict"
        (service / "service.py").write_text(
            textwrap.dedent(bench.BENTO_SERVICE).format(pickle=str(model.pickle), call=call)
        )
    python = bench.peer_python("bentoml")
    port = free_port()
    argv = [
        str(python.parent / "bentoml"),
        "serve",
        "service:Model",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return argv, f"http://127.0.0.1:{port}/readyz", {"BENTOML_DO_NOT_TRACK": "True"}, service


def measure(
    model: bench.Model, contenders: dict[str, Callable[[], Command]], starts: int
) -> list[Start]:
    """Each contender started `starts` times, taking turns (one start of each, then the next
    round), so that this machine's speed drifting during the run weighs on all alike."""
    for make in contenders.values():
        time_start(make())  # one unmeasured start: the file cache, as on a node that pulled
    found = {label: Start(label, model.name, [], 0.0) for label in contenders}
    for _ in range(starts):
        for label, make in contenders.items():
            took, found[label].rss_mb = time_start(make())
            found[label].seconds.append(took)
    return list(found.values())


def container(reference: str, starts: int) -> tuple[list[float], list[float]]:
    """Seconds to create the container, and from starting it to /ready (the image's own
    entrypoint, 2 processes). Apart, because creating is the storage driver's work: this
    machine's vfs copies the whole image for each container, overlayfs (GKE's) does not."""
    from mlship.ship import image, launch

    client = image.engine()
    created, ready = [], []
    for _ in range(starts + 1):
        port = free_port()
        began = time.perf_counter()
        made = launch.run_container(client, reference, port, start=False)
        try:
            made_at = time.perf_counter()
            made.start()
            bench.wait_ready(
                f"http://127.0.0.1:{port}/ready",
                120,
                lambda made=made: launch.container_alive(made),
            )
            created.append(made_at - began)
            ready.append(time.perf_counter() - made_at)
        finally:
            made.remove(force=True)
    return created[1:], ready[1:]  # the first start warms the engine's caches


def layers(reference: str) -> list[tuple[str, float]]:
    """The image's size by layer group, from `docker history`."""
    done = subprocess.run(
        ["docker", "history", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}", reference],
        capture_output=True,
        text=True,
        check=True,
    )
    units = {"B": 1e-6, "kB": 1e-3, "KB": 1e-3, "MB": 1.0, "GB": 1e3}  # docker's: decimal
    groups: dict[str, float] = {}
    for line in reversed(done.stdout.splitlines()):
        size, created = line.split("\t", 1)
        number, unit = re.fullmatch(r"([0-9.]+)\s*([kKMG]?B)", size.strip()).groups()  # type: ignore[union-attr]
        megabytes = float(number) * units[unit]
        if "/opt/venv" in created and "COPY" in created:
            group = "environment (dependencies + mlship)"
        elif "/opt/model" in created:
            group = "model"
        elif "useradd" in created or "SYSTEM_PACKAGES" in created:
            group = "system setup"
        elif not groups or list(groups)[-1] == "base":
            group = "base"
        else:
            group = "configuration"
        groups[group] = groups.get(group, 0.0) + megabytes
    return list(groups.items())


def table(found: list[Start]) -> str:
    lines = [
        "| model | contender | start → ready, median s | runs (s) | RSS at ready MB |",
        "|---|---|---:|---|---:|",
    ]
    for start in found:  # the median to the millisecond: which side of a target it falls
        runs = ", ".join(f"{s:.2f}" for s in start.seconds)
        lines.append(
            f"| {start.model} | {start.contender} | {start.median:.3f} | {runs} | "
            f"{start.rss_mb:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--models", default=",".join(bench.MODELS))
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--image", help="also time this image's start and size its layers")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}; {args.starts} starts each, in turns, after one unmeasured")
    found = []
    with tempfile.TemporaryDirectory(prefix="mlship-startup-") as scratch:
        root = Path(scratch)
        for name in args.models.split(","):
            model = bench.train(name, bench.MODELS[name], root)
            contenders: dict[str, Callable[[], Command]] = {
                "floor: imports + unpickling, no server": partial(floor, model, root),
                "mlship serve --workers 1": partial(mlship, model, 1, root),
                "mlship serve --workers 2": partial(mlship, model, 2, root),
                "mlship serve --workers 2, signed": partial(mlship_signed, model, 2, root),
            }
            if not args.skip_peers:
                contenders["MLServer 1.7.1, 2 workers"] = partial(mlserver, model, root)
                contenders["BentoML 1.4.38, 2 workers"] = partial(bentoml, model, root)
            found += measure(model, contenders, args.starts)
            print(table([s for s in found if s.model == name]), flush=True)
    print("\n" + table(found))
    if args.image:
        created, runs = container(args.image, args.starts)
        print(
            f"\ncontainer start → /ready ({args.image}, 2 processes): median "
            f"{statistics.median(runs):.2f} s; runs {', '.join(f'{r:.2f}' for r in runs)}; "
            f"creating it before that (the storage driver): median "
            f"{statistics.median(created):.2f} s"
        )
        from mlship.ship import image

        size = image.engine().images.get(args.image).attrs.get("Size", 0) / 1e6
        print(
            f"image size {size:.0f} MB: "
            + ", ".join(f"{group} {megabytes:.0f} MB" for group, megabytes in layers(args.image))
        )


if __name__ == "__main__":
    main()
