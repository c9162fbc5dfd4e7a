"""A Spark standalone cluster as plain processes on 127.0.0.1: a master and one-core workers
(pyspark's spark-class), each in its own process group and stopped by PID; and an S3 server
for s3a:// (moto's). Used by the tests and by benchmarks/batch.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from mlship.ship.launch import free_port, wait_ready
from tests.tools import tool


class Cluster:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port, self.ui = free_port(), free_port()
        self.master: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def _start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        import pyspark

        spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
        env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(self.folder)}
        env["SPARK_HOME"] = str(spark_class.parent.parent)
        log = (self.folder / f"{name}.log").open("wb")
        # each in its own process group: stopping one takes its executors and Python along
        return subprocess.Popen(
            [str(spark_class), *args], env=env, stdout=log, stderr=log, start_new_session=True
        )

    def start(self, workers: int) -> None:
        self.master = self._start(
            "master",
            "org.apache.spark.deploy.master.Master",
            *("--host", "127.0.0.1", "--port", str(self.port), "--webui-port", str(self.ui)),
        )
        for i in range(workers):
            work = self.folder / f"worker-{i}"
            work.mkdir()
            self.workers.append(
                self._start(
                    f"worker-{i}",
                    "org.apache.spark.deploy.worker.Worker",
                    *("--host", "127.0.0.1", "--cores", "1", "--memory", "1g"),
                    *("--webui-port", str(free_port()), "--work-dir", str(work), self.url),
                )
            )
        self.wait_for_workers(workers)

    def wait_for_workers(self, count: int) -> None:
        """Until the master answers with `count` workers alive (ones started elsewhere too)."""
        deadline = time.monotonic() + 90
        while (alive := self.alive_workers()) is None or alive < count:
            assert time.monotonic() < deadline, (self.folder / "master.log").read_text()[-3000:]
            time.sleep(0.5)

    def alive_workers(self) -> int | None:
        """The workers the master counts alive; None while it does not answer."""
        try:
            state = httpx.get(f"http://127.0.0.1:{self.ui}/json/", timeout=2).json()
        except (httpx.HTTPError, json.JSONDecodeError):
            return None
        return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")

    def kill_worker(self, index: int) -> None:
        os.killpg(self.workers[index].pid, signal.SIGKILL)
        self.workers[index].wait()

    def stop(self) -> None:
        for process in [*self.workers, self.master]:
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


@dataclass(frozen=True)
class ObjectStore:
    endpoint: str
    key: str = "mlship-test"
    secret: str = "mlship-test-secret"

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            region_name="us-east-1",
        )

    def s3a_conf(self) -> dict[str, str]:
        """What hadoop-aws needs to reach this server from the driver and every executor."""
        return {
            "spark.hadoop.fs.s3a.endpoint": self.endpoint,
            "spark.hadoop.fs.s3a.endpoint.region": "us-east-1",
            "spark.hadoop.fs.s3a.path.style.access": "true",
            "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
            "spark.hadoop.fs.s3a.access.key": self.key,
            "spark.hadoop.fs.s3a.secret.key": self.secret,
        }


@contextmanager
def object_store(folder: Path, *buckets: str) -> Iterator[ObjectStore]:
    """moto's S3 server on 127.0.0.1, as a process. Not rclone's (the team stack's): Spark's
    output committer creates empty folders (keys ending in /), which rclone cannot hold."""
    port = free_port()
    log = (folder / "moto.log").open("wb")
    process = subprocess.Popen(
        [tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    store = ObjectStore(f"http://127.0.0.1:{port}")
    try:
        wait_ready(store.endpoint, 30, lambda: process.poll() is None)
        for bucket in buckets:
            store.client().create_bucket(Bucket=bucket)
        yield store
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()
