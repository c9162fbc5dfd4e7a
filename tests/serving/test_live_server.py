"""The real server process: auth, a standard V2 client, concurrency, several processes."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from mlship.ship.launch import free_port, wait_ready
from tests.serving.live import running_server, running_server_process

pytestmark = pytest.mark.integration
GOOD, BAD = "great taste, would buy again", "stale and bland, awful"


def test_bearer_token_guards_prediction_routes_only(model_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with running_server(
        "--model", str(model_dir), env={"MLSHIP_API_TOKEN": "s3cret"}, log=log
    ) as url:
        body = {"review": GOOD}
        assert httpx.post(f"{url}/predict", json=body).status_code == 401
        wrong = httpx.post(f"{url}/predict", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        right = httpx.post(f"{url}/predict", json=body, headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200
        assert httpx.post(f"{url}/invocations", json={"inputs": [GOOD]}).status_code == 401
        for open_path in ("/health", "/ready", "/metrics", "/v2/health/ready"):
            assert httpx.get(f"{url}{open_path}").status_code == 200, open_path
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert {"request_id", "method", "path", "status", "ms"} <= set(lines[-1])
    assert any(line["status"] == 401 for line in lines)


def test_a_standard_v2_client_works_unchanged(model_dir: Path) -> None:
    with running_server("--model", str(model_dir)) as url:
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("mlship-model")
        assert client.get_model_metadata("mlship-model")["inputs"][0]["name"] == "review"
        for binary in (True, False):  # the binary tensor extension, and plain JSON
            tensor = triton.InferInput("review", [2], "BYTES")
            tensor.set_data_from_numpy(np.array([GOOD, BAD], dtype=object), binary_data=binary)
            wanted = [triton.InferRequestedOutput("label", binary_data=False)]
            result = client.infer("mlship-model", [tensor], outputs=wanted, request_id="r-1")
            labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label")]
            assert labels == ["great", "other"]
            assert result.get_response()["id"] == "r-1"


async def _burst(url: str, requests: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await asyncio.gather(
            *(
                client.post("/predict", json={"review": GOOD if i % 2 else BAD})
                for i in range(requests)
            )
        )


@pytest.mark.parametrize("workers", [1, 2])
def test_concurrent_requests_are_batched_and_answered_right(model_dir: Path, workers: int) -> None:
    with running_server("--model", str(model_dir), "--workers", str(workers)) as url:
        answers = asyncio.run(_burst(url, 200))
        assert all(a.status_code == 200 for a in answers)
        assert [a.json()["label"] for a in answers] == ["other", "great"] * 100
        metrics = httpx.get(f"{url}/metrics").text
    scored = sum(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("batch_rows_sum")
    )
    calls = sum(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("batch_rows_count")
    )
    assert scored >= 200  # every row scored, across all processes (plus warm-ups: not counted)
    assert calls < scored  # and several requests shared a model call


def test_the_first_requests_after_ready_are_answered_by_every_process(model_dir: Path) -> None:
    """/ready turns 200 only when every process can score: each new connection, whichever
    process takes it, is answered at once."""
    with running_server("--model", str(model_dir), "--workers", "2") as url:
        answers = [
            httpx.post(f"{url}/predict", json={"review": GOOD}, timeout=5) for _ in range(20)
        ]
    assert [a.status_code for a in answers] == [200] * 20
    assert {a.json()["label"] for a in answers} == {"great"}


def test_a_worker_that_dies_is_replaced(model_dir: Path) -> None:
    """A worker killed (as the OOM killer would) is replaced by a new fork of the parent;
    the server keeps answering on every process instead of 503 from the survivor on."""
    import os
    import signal

    with running_server_process("--model", str(model_dir), "--workers", "2") as (url, server):
        workers = _children(server.pid)
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while len(set(_children(server.pid)) - {workers[0]}) < 2:
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            time.sleep(0.1)
        wait_ready(f"{url}/ready", 30, lambda: server.poll() is None)
        answers = [
            httpx.post(f"{url}/predict", json={"review": GOOD}, timeout=5) for _ in range(20)
        ]
        replacement = (set(_children(server.pid)) - set(workers)).pop()
    assert [a.status_code for a in answers] == [200] * 20
    assert server.returncode == 0  # every worker, the replacement too, stopped cleanly
    assert not Path(f"/proc/{replacement}").exists()


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_a_busy_port_is_an_error_not_shared(model_dir: Path) -> None:
    import subprocess
    import sys

    with running_server("--model", str(model_dir)) as url:
        port = url.rsplit(":", 1)[1]
        second = subprocess.run(
            [
                str(Path(sys.executable).parent / "mlship"),
                "serve",
                "--model",
                str(model_dir),
                "--host",
                "127.0.0.1",
                "--port",
                port,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert second.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in second.stderr


def test_bad_flags_are_named(model_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mlship.cli import app

    runner = CliRunner()
    missing = runner.invoke(app, ["serve", "--model", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such model directory" in missing.stderr
    mode = runner.invoke(
        app,
        ["serve", "--model", str(model_dir), "--challenger", "x", "--challenger-mode", "mirror"],
    )
    assert mode.exit_code == 2 and "--challenger-mode" in mode.stderr


def test_server_processes_use_one_native_thread(model_dir: Path) -> None:
    with running_server("--model", str(model_dir), "--workers", "2") as url:
        threads = httpx.get(f"{url}/model").json()["native_threads"]
    assert threads and set(threads.values()) == {1}, threads


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_model_directory_that_cannot_load_ends_the_start(
    model_dir: Path, tmp_path: Path, workers: str
) -> None:
    """A baked-in model's files do not change: retrying cannot help, so the server exits 2
    with the reason (a pod shows a restart loop and this line) instead of waiting at 503."""
    import shutil
    import subprocess
    import sys

    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken)
    (broken / "model.skops").write_bytes(b"not a model")
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "mlship"),
            "serve",
            "--model",
            str(broken),
            "--port",
            str(free_port()),
            "--workers",
            workers,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert f"cannot load the model in {broken}" in done.stderr
    assert "not a readable skops file" in done.stderr
