"""The team stack for real on 127.0.0.1: PostgreSQL (MLflow's backend store), an
S3-compatible server (MLflow's artifacts and the DVC remote) and an `mlflow server` on both.
Each is started by hand in a temporary folder and stopped by PID. compose/docker-compose.yml
is the production equivalent (MinIO instead of rclone, which serves S3 here)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mlship.ship.launch import free_port
from tests.processes import running
from tests.tools import tool

BIN = Path(sys.executable).parent
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")  # Debian's postgresql-15, not on PATH


@dataclass(frozen=True)
class S3:
    endpoint: str
    key: str
    secret: str

    @property
    def env(self) -> dict[str, str]:
        """What boto3 (MLflow) and s3fs (DVC) read."""
        return {
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
        }


def _wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _as_postgres(command: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: as root, run them as Debian's postgres."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL 15 cluster on a free port; yields the SQLAlchemy URL of database mlflow.
    Its folder is its own under /tmp (pytest's are closed to the postgres user), removed
    after the server stopped."""
    initdb = POSTGRES_BIN / "initdb"
    if not initdb.exists():
        tool("initdb")  # skip, or fail under MLSHIP_REQUIRE_TOOLS
    folder = Path(tempfile.mkdtemp(prefix="mlship-postgres-"))
    try:
        with _cluster(initdb, folder) as url:
            yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _cluster(initdb: Path, folder: Path) -> Iterator[str]:
    password = secrets.token_hex(16)
    (folder / "password").write_text(password)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        shutil.chown(folder / "password", "postgres", "postgres")
    data, port = folder / "data", free_port()
    subprocess.run(
        _as_postgres(
            [
                str(initdb),
                "-D",
                str(data),
                "-U",
                "mlship",
                "--pwfile",
                str(folder / "password"),
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "-E",
                "UTF8",
            ]
        ),
        check=True,
        capture_output=True,
    )
    server = [
        str(POSTGRES_BIN / "postgres"),
        "-D",
        str(data),
        "-p",
        str(port),
        "-k",
        str(folder),
        "-c",
        "listen_addresses=127.0.0.1",
    ]
    log = (folder / "postgres.log").open("w")
    process = subprocess.Popen(_as_postgres(server), stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port)
        subprocess.run(
            _as_postgres(
                [
                    str(POSTGRES_BIN / "createdb"),
                    "-h",
                    str(folder),
                    "-p",
                    str(port),
                    "-U",
                    "mlship",
                    "mlflow",
                ]
            ),
            check=True,
            capture_output=True,
        )
        yield f"postgresql+psycopg2://mlship:{password}@127.0.0.1:{port}/mlflow"
    finally:
        process.terminate()  # runuser passes SIGTERM on: postgres's smart shutdown
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@contextmanager
def s3_server(folder: Path, *buckets: str) -> Iterator[S3]:
    """rclone's S3 server over a local folder; each bucket is a top-level directory."""
    for bucket in buckets:
        (folder / bucket).mkdir(parents=True)
    port, key, secret = free_port(), f"mlship-{secrets.token_hex(8)}", secrets.token_hex(24)
    command = [
        tool("rclone"),
        "serve",
        "s3",
        str(folder),
        "--addr",
        f"127.0.0.1:{port}",
        "--auth-key",
        f"{key},{secret}",
        "--config",
        "/dev/null",
    ]
    log = (folder.parent / "rclone.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port)
        yield S3(f"http://127.0.0.1:{port}", key, secret)
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@contextmanager
def mlflow_server(
    folder: Path, backend: str, artifacts: str, env: Mapping[str, str] = {}
) -> Iterator[str]:
    """`mlflow server` on `backend` with artifacts in `artifacts`, proxied: clients need
    neither the folder nor the object store's keys (the server gets them in `env`)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(BIN / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        backend,
        "--artifacts-destination",
        artifacts,
    ]
    # the GenAI job consumers (six processes) are not needed to track runs
    env = {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with running(
        command,
        f"{url}/health",
        ready_timeout=180,
        stop_timeout=30,
        env=env,
        log=folder / "mlflow-server.log",
    ):
        yield url
