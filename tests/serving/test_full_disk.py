"""A server whose temporary folder fills up keeps serving: the feedback store stops
remembering answers before the disk is full (and says so in a metric), and requests with
made-up methods add no metrics series. On the code before, 1,000 large answers filled a
16 MiB /tmp, /feedback answered 500, and new metrics series then crashed both workers with
a bus error.

The server runs in a mount namespace of its own with a small tmpfs as its TMPDIR (root
only: CI runs as root)."""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlship.ship.launch import free_port
from tests.processes import running

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("unshare") is None,
        reason="needs root and unshare for a private tmpfs",
    ),
]
BIN = Path(sys.executable).parent
UNUSED_METHODS = (
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "SEARCH",
    "PURGE",
    "REPORT",
    "MKACTIVITY",
    "CHECKOUT",
    "MERGE",
    "NOTIFY",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "MKCALENDAR",
    "LINK",
    "UNLINK",
    "TRACE",
)
TMPFS_MB, BALLAST_MB = 24, 12  # about 12 MiB left: the store may take 4 of it


def _counter(url: str, name: str, outcome: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and sample.labels.get("outcome") == outcome
    )


def test_a_filling_disk_stops_the_memory_of_answers_not_the_server(
    model_dir: Path, tmp_path: Path
) -> None:
    scratch = tmp_path / "tmpfs"
    scratch.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = (
        f"mount -t tmpfs -o size={TMPFS_MB}m tmpfs {scratch} && "
        f"dd if=/dev/zero of={scratch}/ballast bs=1M count={BALLAST_MB} status=none && "
        f"exec env TMPDIR={scratch} {BIN / 'mlship'} serve --model {model_dir} "
        f"--host 127.0.0.1 --port {port} --workers 2"
    )
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", serve]
    env = {"MLSHIP_FEEDBACK_MAX_BYTES": str(1024**3)}  # only the disk limits the store
    batch = [{"review": f"great taste, would buy again {i}"} for i in range(2000)]
    with (
        running(command, f"{url}/ready", ready_timeout=90, env=env),
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        first = client.post("/predict", json=batch)
        assert first.status_code == 200
        # when answers of 2,000 rows (about 16 kB each) arrive until the store is full
        for _ in range(600):
            assert client.post("/predict", json=batch).status_code == 200
            if _counter(url, "feedback_answers_total", "storage_full") >= 20:
                break
        assert _counter(url, "feedback_answers_total", "storage_full") >= 20
        # then requests are still answered, and an early answer still takes feedback
        labels = [row["label"] for row in first.json()["predictions"]]
        feedback = client.post(
            "/feedback",
            json={"request_id": first.headers["x-request-id"], "labels": labels},
        )
        assert feedback.status_code == 200, feedback.text
        # and methods the HTTP parser knows but the server does not use (each was a new
        # metrics series) are answered without adding any, and without a crash
        for method in UNUSED_METHODS:
            for path in ("/predict", "/feedback", "/model", "/nowhere"):
                assert client.request(method, path).status_code < 500
        assert client.post("/predict", json=batch[:1]).status_code == 200
        metrics = client.get("/metrics").text
        assert 'method="OTHER"' in metrics and 'method="PROPFIND"' not in metrics


def test_a_disk_filled_by_another_file_leaves_every_worker_serving(
    model_dir: Path, tmp_path: Path
) -> None:
    """Something else fills the server's TMPDIR to the last block, then every metrics series
    the labels allow is asked for (routes x methods x statuses): each new series needs room
    in the metrics files. On the code before, a worker died of SIGBUS after about 45
    requests, every replacement the same, and the server stopped."""
    scratch = tmp_path / "tmpfs"
    scratch.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = (
        f"mount -t tmpfs -o size=20m tmpfs {scratch} && "
        f"exec env TMPDIR={scratch} {BIN / 'mlship'} serve --model {model_dir} "
        f"--host 127.0.0.1 --port {port} --workers 2"
    )
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", serve]
    with (
        running(command, f"{url}/ready", ready_timeout=90) as server,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        # the tmpfs is the server's own: fill it from inside its mount namespace
        fill = (
            f"dd if=/dev/zero of={scratch}/ballast bs=4k status=none; df --output=avail {scratch}"
        )
        filled = subprocess.run(
            ["nsenter", "-t", str(server.pid), "-m", "sh", "-c", fill],
            capture_output=True,
            text=True,
            check=False,
        )
        assert filled.stdout.split()[-1] == "0", filled.stdout + filled.stderr
        answered: collections.Counter[int] = collections.Counter()
        routes = ["/predict", "/invocations", "/v2/models/m/infer", "/feedback", "/model", "/x"]
        bodies = [{}, {"review": "fine"}, {"review": 3}, [], "not json"]
        for path in routes:
            for method in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"):
                for body in bodies:
                    answered[client.request(method, path, json=body).status_code] += 1
        assert max(answered) < 500, answered
        # and both workers are the ones that started: none died
        for _ in range(20):
            assert client.post("/predict", json={"review": "great"}).status_code == 200
        children = subprocess.run(
            ["pgrep", "-P", str(server.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        assert len(children) == 2, children
