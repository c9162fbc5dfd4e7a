"""The third pass's attacks on a live server, each reproduced as it was found and kept here
so it stays refused: forged client addresses, a huge forged address, feedback given for
another client's request, a request id taken first by another client, and concurrent large
requests overrunning the row limit. 127.0.0.1 only, bounded in time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.serving.live import running_server

pytestmark = pytest.mark.integration
ALICE, MALLORY = "alice-token-0123456789", "mallory-token-0123456789"


def test_a_forged_x_forwarded_for_does_not_make_a_new_client(model_dir: Path) -> None:
    """Reproduction: a limit of 5 requests/s, a new forged address per request: 30 of 30
    were answered, because uvicorn trusted X-Forwarded-For from 127.0.0.1."""
    env = {"MLSHIP_RATE_LIMIT_REQUESTS": "5", "MLSHIP_RATE_LIMIT_BURST_SECONDS": "1"}
    with (
        running_server("--model", str(model_dir), "--workers", "1", env=env) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        statuses = [
            client.post(
                "/predict",
                json={"review": "great"},
                headers={"X-Forwarded-For": f"203.0.113.{i}"},
            ).status_code
            for i in range(30)
        ]
        assert statuses.count(200) <= 6 and statuses.count(429) >= 24, statuses
        # nor can a forged address spend another client's budget: the victim here is
        # 127.0.0.1 itself, whose budget the flood above already spent; a header naming
        # another address changes nothing either way
        victim = client.post(
            "/predict", json={"review": "fine"}, headers={"X-Forwarded-For": "10.0.0.9"}
        )
        assert victim.status_code == 429


def test_behind_a_trusted_proxy_the_forwarded_client_is_limited_and_a_huge_one_cut(
    model_dir: Path, tmp_path: Path
) -> None:
    """With MLSHIP_TRUSTED_PROXIES naming the proxy (here 127.0.0.1 itself), each forwarded
    address is a client of its own; a 60 kB forged address is kept and logged cut to 64
    characters (reproduction: 60 kB per bucket and per access-log line)."""
    env = {
        "MLSHIP_RATE_LIMIT_REQUESTS": "5",
        "MLSHIP_RATE_LIMIT_BURST_SECONDS": "1",
        "MLSHIP_TRUSTED_PROXIES": "127.0.0.1",
    }
    log = tmp_path / "server.log"
    with (
        running_server("--model", str(model_dir), "--workers", "1", env=env, log=log) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        one = [
            client.post(
                "/predict", json={"review": "x"}, headers={"X-Forwarded-For": "198.51.100.7"}
            ).status_code
            for _ in range(10)
        ]
        assert one.count(429) >= 4  # one forwarded client, limited
        other = client.post(
            "/predict", json={"review": "x"}, headers={"X-Forwarded-For": "198.51.100.8"}
        )
        assert other.status_code == 200  # another forwarded client, its own budget
        huge = "a" * 60_000
        for i in range(50):
            client.post(
                "/predict", json={"review": "x"}, headers={"X-Forwarded-For": huge + str(i)}
            )
    lines = log.read_text().splitlines()
    assert max(len(line) for line in lines) < 2000
    assert any('"client":"' + "a" * 64 + "…" in line for line in lines)


def test_feedback_belongs_to_the_client_that_asked(model_dir: Path, tmp_path: Path) -> None:
    """Reproduction: with named tokens, mallory's feedback for alice's request id was
    accepted (and alice's own then got 409); with a client-chosen id, mallory took it first
    and alice's feedback was scored against mallory's answer."""
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice {ALICE}\nmallory {MALLORY}\n")
    env = {"MLSHIP_API_TOKENS_FILE": str(tokens)}
    as_alice = {"Authorization": f"Bearer {ALICE}"}
    as_mallory = {"Authorization": f"Bearer {MALLORY}"}
    with (
        running_server("--model", str(model_dir), "--workers", "2", env=env) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        asked = client.post("/predict", json={"review": "great taste"}, headers=as_alice)
        request_id = asked.headers["x-request-id"]
        label = asked.json()["label"]
        forged = client.post(
            "/feedback", json={"request_id": request_id, "label": label}, headers=as_mallory
        )
        assert forged.status_code == 404 and "of this client" in forged.json()["detail"]
        own = client.post(
            "/feedback", json={"request_id": request_id, "label": label}, headers=as_alice
        )
        assert own.status_code == 200, own.text
        # a client-chosen id taken first by mallory does not take alice's answer
        order = {"X-Request-ID": "order-1001"}
        first = client.post("/predict", json={"review": "stale, awful"}, headers=as_mallory | order)
        second = client.post("/predict", json={"review": "great taste"}, headers=as_alice | order)
        assert first.json()["label"] != second.json()["label"]
        scored = client.post(
            "/feedback",
            json={"request_id": "order-1001", "label": second.json()["label"]},
            headers=as_alice,
        )
        assert scored.status_code == 200, scored.text
        assert scored.json()["answers"] == [second.json()["label"]]  # hers, not mallory's


def test_concurrent_large_requests_cannot_overrun_the_row_limit(model_dir: Path) -> None:
    """Reproduction: rows were charged after the answer, so 10 concurrent 2,000-row
    requests from one client got 8 answers against a 2,000-row bucket."""
    env = {
        "MLSHIP_RATE_LIMIT_REQUESTS": "100",
        "MLSHIP_RATE_LIMIT_ROWS": "100",
        "MLSHIP_RATE_LIMIT_BURST_SECONDS": "1",
    }
    batch = [{"review": f"great taste {i}"} for i in range(2000)]

    async def send_all(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return list(
                await asyncio.gather(*(client.post("/predict", json=batch) for _ in range(10)))
            )

    with running_server("--model", str(model_dir), "--workers", "1", env=env) as url:
        answers = asyncio.run(send_all(url))
    statuses = [answer.status_code for answer in answers]
    assert statuses.count(200) == 1 and statuses.count(429) == 9, statuses
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert "2000 rows are over this client's rate of rows" in refused.json()["detail"]


def test_metrics_are_guarded_by_their_own_token_when_one_is_set(
    model_dir: Path, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from mlship.config.settings import Settings
    from mlship.serving.app import create_app
    from tests.serving.conftest import wait_ready

    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice {ALICE}\n")
    settings = Settings(api_tokens_file=str(tokens), metrics_token="scrape-token-0123456789")  # type: ignore[call-arg, arg-type]
    with TestClient(create_app(str(model_dir), settings)) as client:
        wait_ready(client)
        assert client.get("/metrics").status_code == 401
        scraper = {"Authorization": "Bearer scrape-token-0123456789"}
        assert client.get("/metrics", headers=scraper).status_code == 200
        assert (
            client.get("/metrics", headers={"Authorization": f"Bearer {ALICE}"}).status_code == 200
        )
        # the scrape token reads metrics only: it cannot predict
        assert client.post("/predict", json={"review": "x"}, headers=scraper).status_code == 401
        # and the page offers a token field when only a tokens file is set
        assert "name=token" in client.get("/", headers={"Authorization": f"Bearer {ALICE}"}).text
