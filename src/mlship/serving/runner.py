"""Run the server as N single-worker processes, each with its own SO_REUSEPORT socket.

uvicorn's own `--workers N` leaves Nagle's algorithm on for accepted sockets, which added
about 45 ms per keep-alive request in our measurements, and its shared listening socket let
one worker take every connection of a burst. Separate sockets with SO_REUSEPORT let the
kernel spread connections evenly; each process runs its own event loop and model copy.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

from mlship.config.settings import Settings
from mlship.serving.app import create_app  # imports scikit-learn: see mlship.serving.threads
from mlship.serving.http import DeadlineProtocol
from mlship.serving.plane import Challenger, Siblings

log = logging.getLogger("mlship.serve")


@dataclass(frozen=True)
class ServeOptions:
    source: str
    host: str
    port: int
    workers: int
    challenger: Challenger | None = None
    siblings: Siblings | None = None  # with several processes
    metrics_file: Path | None = None  # a model directory's evaluation, shown on /model and /


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def ensure_free(host: str, port: int) -> None:
    """Fail when something already listens there: with SO_REUSEPORT alone, a second server
    on a busy port would quietly share its traffic instead."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, port))  # OSError (address in use) propagates to the CLI


def configure_logging(level: str) -> None:
    """JSON access lines as they are; everything else with a level and a logger name."""
    # what the logging HOWTO's "Optimization" section lists for records nobody reads: no
    # caller lookup, thread or process names (a per-request cost in profiles of this server)
    logging._srcfile = None  # the documented switch
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger("mlship.access")
    access.handlers[:] = [handler]
    access.propagate = False
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def serve_one(options: ServeOptions, settings: Settings) -> None:
    """One process: one socket, one event loop, one model."""
    import uvicorn

    configure_logging(settings.log_level)
    sock = bind(options.host, options.port)
    DeadlineProtocol.head_timeout = settings.head_timeout_seconds
    config = uvicorn.Config(
        create_app(
            options.source, settings, options.challenger, options.siblings, options.metrics_file
        ),
        loop="uvloop",
        http=DeadlineProtocol,
        lifespan="on",
        access_log=False,  # ours is JSON, with the request id
        log_config=None,
        timeout_graceful_shutdown=10,
        timeout_keep_alive=max(1, round(settings.keep_alive_seconds)),
        limit_concurrency=settings.max_connections,
    )
    uvicorn.Server(config).run(sockets=[sock])


def serve(options: ServeOptions, settings: Settings) -> None:
    ensure_free(options.host, options.port)
    if options.workers == 1:
        serve_one(options, settings)
        return
    metrics_dir = tempfile.mkdtemp(prefix="mlship-metrics-")
    if settings.feedback_db is None:  # one feedback file for every worker
        settings = settings.model_copy(update={"feedback_db": f"{metrics_dir}/feedback.sqlite"})
    ready_dir = Path(metrics_dir) / "ready"
    ready_dir.mkdir()
    options = replace(options, siblings=Siblings(ready_dir, options.workers))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # before any child imports prometheus
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=serve_one, args=(options, settings), name=f"mlship-serve-{i}")
        for i in range(options.workers)
    ]
    for child in children:
        child.start()

    def forward(signum: int, frame: FrameType | None) -> None:
        for child in children:
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        for child in children:
            child.join()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    failed = [child.exitcode for child in children if child.exitcode not in (0, -signal.SIGTERM)]
    if failed:
        raise SystemExit(1)
