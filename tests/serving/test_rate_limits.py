"""Per-client rate limits on the real server: one client hammering it is throttled with 429
and Retry-After while another keeps its answers and its latency; rows count as well as
requests; a bad tokens file stops the server at start. Bounded in time, 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlship.ship.launch import free_port
from tests.serving.live import running_server

pytestmark = pytest.mark.integration
ABUSER, POLITE = "a" * 24, "p" * 24  # their tokens
RATE = 20  # requests per second per client
SECONDS = 4.0


@dataclass
class Tally:
    statuses: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # seconds, 200s only
    retry_after: set[str] = field(default_factory=set)


async def _polite(url: str, seconds: float, tally: Tally) -> None:
    """Five requests a second, well within its rate."""
    headers = {"Authorization": f"Bearer {POLITE}"}
    async with httpx.AsyncClient(base_url=url, timeout=10, headers=headers) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            answer = await client.post("/predict", json={"review": "great taste"})
            tally.statuses.append(answer.status_code)
            if answer.status_code == 200:
                tally.latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.2)


async def _abuser(url: str, seconds: float, tally: Tally) -> None:
    """As fast as 16 connections go: what copying the model by querying it looks like."""
    headers = {"Authorization": f"Bearer {ABUSER}"}
    async with httpx.AsyncClient(base_url=url, timeout=10, headers=headers) as client:
        deadline = time.monotonic() + seconds

        async def hammer() -> None:
            while time.monotonic() < deadline:
                answer = await client.post("/predict", json={"review": "stale"})
                tally.statuses.append(answer.status_code)
                if answer.status_code == 429:
                    tally.retry_after.add(answer.headers["retry-after"])

        await asyncio.gather(*(hammer() for _ in range(16)))


def abuse(url: str, seconds: float, results: Any) -> None:
    """The abuser in a process of its own: its client work must not slow the polite one's."""
    tally = Tally()
    asyncio.run(_abuser(url, seconds, tally))
    results.put((tally.statuses, sorted(tally.retry_after)))


def _load(url: str) -> tuple[Tally, Tally, Tally]:
    alone, polite, abuser = Tally(), Tally(), Tally()
    asyncio.run(_polite(url, 2.0, alone))  # the polite client's latency with nobody else
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=abuse, args=(url, SECONDS, results))
    process.start()
    time.sleep(0.5)  # under way
    asyncio.run(_polite(url, SECONDS - 1.0, polite))
    statuses, retry_after = results.get(timeout=60)
    process.join(timeout=10)
    abuser.statuses, abuser.retry_after = statuses, set(retry_after)
    return alone, polite, abuser


def _p50_ms(tally: Tally) -> float:
    return statistics.median(tally.latencies) * 1e3


def test_one_abusive_client_is_throttled_while_another_keeps_its_latency(
    model_dir: Path, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# client token\nabuser {ABUSER}\npolite {POLITE}\n")
    env = {
        "MLSHIP_API_TOKENS_FILE": str(tokens),
        "MLSHIP_RATE_LIMIT_REQUESTS": str(RATE),
        "MLSHIP_RATE_LIMIT_BURST_SECONDS": "1",
    }
    with running_server("--model", str(model_dir), env=env) as url:
        alone, polite, abuser = _load(url)
        metrics = httpx.get(f"{url}/metrics").text
    served = abuser.statuses.count(200)
    throttled = abuser.statuses.count(429)
    print(
        f"\nabuser: {len(abuser.statuses)} requests in {SECONDS:g} s, {served} answered, "
        f"{throttled} refused with 429; polite: {polite.statuses.count(200)}/"
        f"{len(polite.statuses)} answered, p50 {_p50_ms(polite):.1f} ms "
        f"(alone {_p50_ms(alone):.1f} ms)"
    )
    # the abuser got its burst and its rate, no more, and was told when to come back
    assert set(abuser.statuses) == {200, 429}
    assert served <= RATE * SECONDS + RATE + 5
    assert throttled > served
    assert abuser.retry_after == {"1"}
    # the polite client was never refused, and kept a latency near its own
    assert set(polite.statuses) == {200} and len(polite.statuses) >= 10
    assert _p50_ms(polite) < max(4 * _p50_ms(alone), 50.0)
    assert f'rate_limit_decisions_total{{outcome="over_requests"}} {float(throttled)}' in metrics


def test_rows_count_against_the_rate_as_well(model_dir: Path) -> None:
    env = {"MLSHIP_RATE_LIMIT_REQUESTS": "1000", "MLSHIP_RATE_LIMIT_ROWS": "100"}
    batch = [{"review": f"great {i}"} for i in range(150)]
    with running_server("--model", str(model_dir), env=env) as url:
        first = httpx.post(f"{url}/predict", json=batch)  # the bucket holds 2000 rows at start
        assert first.status_code == 200
        for _ in range(13):
            httpx.post(f"{url}/predict", json=batch)
        refused = httpx.post(f"{url}/predict", json=batch)
        assert refused.status_code == 429 and "rate of rows" in refused.json()["detail"]
        assert int(refused.headers["retry-after"]) >= 1
        # the probes stay open to the kubelet whatever a client did
        assert httpx.get(f"{url}/ready").status_code == 200


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("alice short\n", "the token at least 16 characters"),
        (f"alice {ABUSER}\nbob {ABUSER}\n", "also another client's"),
        ("# nobody yet\n", "no `<client name> <token>` line"),
    ],
)
def test_a_bad_tokens_file_stops_the_server_at_start(
    model_dir: Path, tmp_path: Path, content: str, says: str
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(content)
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "mlship"),
            "serve",
            "--model",
            str(model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MLSHIP_API_TOKENS_FILE": str(tokens)},
    )
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
