"""Run the server as N single-worker processes, each with its own SO_REUSEPORT socket.

uvicorn's own `--workers N` leaves Nagle's algorithm on for accepted sockets, which added
about 45 ms per keep-alive request in our measurements, and its shared listening socket let
one worker take every connection of a burst. Separate sockets with SO_REUSEPORT let the
kernel spread connections evenly; each process runs its own event loop.

The models are loaded and warmed before any socket opens; with several processes, once, in
the parent, which then forks the workers: they share the libraries' and the model's memory
(copy-on-write, the objects frozen out of the garbage collector's reach) and start serving
at once, instead of each importing and loading everything again. A model that cannot load
yet is left to each worker, which keeps retrying (and answers /health meanwhile). Nothing in
the parent runs a thread or an event loop before the fork, and Prometheus' multiprocess
directory is set before it is imported.
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
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from mlship.collector import paused_collector
from mlship.config.settings import Settings
from mlship.errors import InputError

if TYPE_CHECKING:  # imported in the functions: scikit-learn and Prometheus load after setup
    from mlship.serving.model import ServedModel
    from mlship.serving.options import Challenger, Siblings

log = logging.getLogger("mlship.serve")

RESTARTS_PER_MINUTE = 5


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


def preload(options: ServeOptions, settings: Settings) -> dict[str, ServedModel]:
    """The champion (and challenger) loaded and warmed, by source. A model directory that
    cannot be loaded ends the start (InputError): its files do not change, so retrying
    cannot help, and in a pod the failure shows as a restart loop with the reason in the
    log. A registry version that cannot load yet (the registry down, an alias not set) and
    a model that fails its warm-up are left out: each worker loads them itself, retrying,
    with /ready at 503 and the reason."""
    from mlship.registry.loading import MODELS_SCHEME
    from mlship.serving.plane import freeze_loaded, load_model

    loaded = {}
    sources = [options.source] + ([options.challenger.source] if options.challenger else [])
    for source in sources:
        try:
            model = load_model(source, settings, options.metrics_file)
        except Exception as error:  # a registry version: the workers retry with back-off
            if not source.startswith(MODELS_SCHEME):
                raise InputError(f"cannot load the model in {source}: {error}") from error
            log.warning("cannot load %s before starting the workers: %s", source, error)
            continue
        try:
            model.warm()
        except Exception as error:  # the workers retry with back-off, saying why
            log.warning("model %s fails its warm-up; the workers retry: %s", source, error)
            continue
        loaded[source] = model
    freeze_loaded(collect=False)
    return loaded


def serve_one(
    options: ServeOptions, settings: Settings, preloaded: dict[str, ServedModel] | None = None
) -> None:
    """One process: one socket, one event loop, one model (preloaded ones served first)."""
    import uvicorn

    from mlship.serving.app import create_app
    from mlship.serving.http import DeadlineProtocol

    sock = bind(options.host, options.port)
    DeadlineProtocol.head_timeout = settings.head_timeout_seconds
    config = uvicorn.Config(
        create_app(
            options.source,
            settings,
            options.challenger,
            options.siblings,
            options.metrics_file,
            preloaded,
        ),
        loop="uvloop",
        http=DeadlineProtocol,
        # no WebSocket routes, and no WebSocket library in the image: a venv that has one for
        # another package's sake neither imports it at start nor upgrades, as in the image
        ws="none",
        lifespan="on",
        access_log=False,  # ours is JSON, with the request id
        # X-Forwarded-For names the client only when it comes from a proxy the deployment
        # trusts (uvicorn's default trusts any connection from 127.0.0.1: a sidecar, a
        # port-forward, a local proxy — and anyone forging the header through them)
        proxy_headers=bool(settings.proxies),
        forwarded_allow_ips=settings.proxies or None,
        log_config=None,
        timeout_graceful_shutdown=10,
        timeout_keep_alive=max(1, round(settings.keep_alive_seconds)),
        limit_concurrency=settings.max_connections,
    )
    uvicorn.Server(config).run(sockets=[sock])


def serve(options: ServeOptions, settings: Settings) -> None:
    ensure_free(options.host, options.port)
    if settings.api_tokens_file:  # a bad file stops the start, not the first request
        from mlship.serving.limits import read_tokens

        read_tokens(settings.api_tokens_file)
    configure_logging(settings.log_level)
    guarded = settings.api_token is not None or settings.api_tokens_file is not None
    if guarded and settings.metrics_token is None:
        log.warning(
            "prediction routes need a token, /metrics does not (its counts and the git sha are "
            "readable by whoever reaches the server): set MLSHIP_METRICS_TOKEN to guard it"
        )
    metrics_dir = None
    if options.workers > 1:
        metrics_dir = tempfile.mkdtemp(prefix="mlship-metrics-")
        settings = settings.per_worker(options.workers)
        if settings.feedback_db is None:  # one feedback file for every worker
            feedback_db = f"{metrics_dir}/feedback.sqlite"
            settings = settings.model_copy(update={"feedback_db": feedback_db})
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # before prometheus is imported
        from mlship.serving.metric_files import reserve_metric_files
        from mlship.serving.options import Siblings

        reserve_metric_files()  # a full disk must not kill a worker (metric_files.py)

        ready_dir = Path(metrics_dir) / "ready"
        ready_dir.mkdir()
        options = replace(options, siblings=Siblings(ready_dir, options.workers))
    try:
        preloaded = start_up(options, settings)
        if options.workers == 1:
            serve_one(options, settings, preloaded)
        else:
            supervise(options, settings, preloaded)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def start_up(options: ServeOptions, settings: Settings) -> dict[str, ServedModel]:
    """Import the server and load the models once, before any socket opens (and before
    workers fork, so they share both). The cyclic collector stays off until then: its
    passes over the growing heap of fresh imports cost a fifth of their time; the little
    garbage they leave is frozen with the rest (a full pass cost more than it frees)."""
    with paused_collector():
        import uvicorn  # noqa: F401
        import uvloop  # noqa: F401

        import mlship.serving.app
        import mlship.serving.http  # noqa: F401

        return preload(options, settings)


def _worker(options: ServeOptions, settings: Settings, preloaded: dict[str, ServedModel]) -> None:
    """A forked worker: without the parent's signal handlers, which uvicorn restores and
    calls again when it stops."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    serve_one(options, settings, preloaded)


def supervise(options: ServeOptions, settings: Settings, preloaded: dict[str, ServedModel]) -> None:
    """Fork the workers and keep their number: one that dies (a crash, the OOM killer) is
    replaced by a fresh fork of the preloaded parent, as gunicorn does, so the server does
    not go on answering /ready 503 on the survivors forever. Workers dying faster than
    RESTARTS_PER_MINUTE stop the server (exit 1): a restart loop is for Kubernetes to see."""
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("fork")
    siblings = options.siblings
    stopping = False

    children: list[multiprocessing.process.BaseProcess] = []

    def start() -> None:
        child = context.Process(target=_worker, args=(options, settings, preloaded))
        child.start()
        children.append(child)
        if stopping and child.pid is not None:  # a signal came while it started
            os.kill(child.pid, signal.SIGTERM)

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for _ in range(options.workers):
        start()
    restarts: list[float] = []
    failed = False
    while children:
        wait([child.sentinel for child in children])
        for child in [child for child in children if not child.is_alive()]:
            children.remove(child)
            if siblings is not None and child.pid is not None:
                siblings.forget(child.pid)
            if stopping:
                failed = failed or child.exitcode not in (0, -signal.SIGTERM)
                continue
            now = time.monotonic()
            restarts = [when for when in restarts if now - when < 60] + [now]
            if len(restarts) > RESTARTS_PER_MINUTE:
                log.error("workers keep dying (last exit code %s): stopping", child.exitcode)
                forward(signal.SIGTERM, None)
                failed = True
                continue
            log.error("worker %s exited with code %s: starting another", child.pid, child.exitcode)
            start()
    if failed:
        raise SystemExit(1)
