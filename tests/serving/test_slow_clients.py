"""Slow and heavy clients against a real server: silent, trickling and stalled connections
are cut off; single-row requests keep being answered while large requests run."""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from pathlib import Path

import httpx
import pytest

from tests.serving.live import running_server

pytestmark = pytest.mark.integration
LIMITS = {
    "MLSHIP_HEAD_TIMEOUT_SECONDS": "1",
    "MLSHIP_BODY_TIMEOUT_SECONDS": "1",
    "MLSHIP_KEEP_ALIVE_SECONDS": "1",
}


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _read_all(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes; and how long that took."""
    started, data = time.monotonic(), b""
    while chunk := sock.recv(4096):
        data += chunk
    return data, time.monotonic() - started


def test_silent_trickling_and_stalled_clients_are_cut_off(model_dir: Path) -> None:
    with running_server("--model", str(model_dir), env=LIMITS) as url:
        # a connection that never sends a byte
        silent = _connect(url)
        assert _read_all(silent)[1] < 5
        # a request head that trickles in and never ends
        trickle = _connect(url)
        trickle.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.5)
        trickle.sendall(b"X-Slow: 1\r\n")
        assert _read_all(trickle)[1] < 5
        # a body that stops half-way: 408 naming the deadline
        stalled = _connect(url)
        stalled.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"review": "'
        )
        answer, waited = _read_all(stalled)
        assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in answer
        assert waited < 5
        # and the server still answers
        assert httpx.post(f"{url}/predict", json={"review": "tasty"}).status_code == 200


async def _single_rows(url: str, seconds: float) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.monotonic()
            answer = await client.post("/predict", json={"review": "great taste"})
            assert answer.status_code == 200
            latencies.append(time.monotonic() - started)
    return latencies


async def _large(url: str, seconds: float) -> int:
    body = [{"review": f"a long review of a snack, number {i}, rather good"} for i in range(2000)]
    done = 0
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert (await client.post("/predict", json=body)).status_code == 200
            done += 1
    return done


def test_single_rows_stay_answered_while_large_requests_run(model_dir: Path) -> None:
    async def scenario(url: str) -> tuple[list[float], int]:
        small, large_a, large_b = await asyncio.gather(
            _single_rows(url, 4), _large(url, 4), _large(url, 4)
        )
        return small, large_a + large_b

    with running_server("--model", str(model_dir), "--workers", "1") as url:
        small, large = asyncio.run(scenario(url))
    # a loose bound (the figure is in benchmarks/): not stuck behind whole large requests
    assert large >= 2 and len(small) >= 10
    assert statistics.median(small) < 0.5, statistics.median(small)
