"""A Spark standalone cluster as plain processes on 127.0.0.1: a master and one-core workers
(pyspark's spark-class), each in its own process group and stopped by PID. Used by the tests
and by benchmarks/batch.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from mlship.ship.launch import free_port


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
        deadline = time.monotonic() + 90
        while self.alive_workers() < workers:
            assert time.monotonic() < deadline, (self.folder / "master.log").read_text()[-3000:]
            time.sleep(0.5)

    def alive_workers(self) -> int:
        try:
            state = httpx.get(f"http://127.0.0.1:{self.ui}/json/", timeout=2).json()
        except (httpx.HTTPError, json.JSONDecodeError):
            return 0
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
