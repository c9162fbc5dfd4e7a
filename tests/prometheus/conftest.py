"""A real Prometheus on 127.0.0.1, scraping what a test names every second."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import pytest
import yaml

from mlship.ship.launch import free_port
from tests.processes import running
from tests.tools import tool

Scrape = dict[str, str]  # "target" host:port and the labels to put on its series


class RealPrometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def samples(self, query: str) -> int:
        """How many series answer `query` now (0 before the first scrape lands)."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": query}, timeout=10)
        return len(answer.json()["data"]["result"])


@pytest.fixture
def prometheus(tmp_path: Path) -> Callable[[list[Scrape]], AbstractContextManager[RealPrometheus]]:
    @contextmanager
    def start(targets: list[Scrape]) -> Iterator[RealPrometheus]:
        port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {
                    "job_name": "mlship",
                    "static_configs": [
                        {
                            "targets": [t["target"]],
                            "labels": {k: v for k, v in t.items() if k != "target"},
                        }
                        for t in targets
                    ],
                }
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        command = [
            tool("prometheus"),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        url = f"http://127.0.0.1:{port}"
        with running(command, f"{url}/-/ready", ready_timeout=60, log=tmp_path / "prometheus.log"):
            yield RealPrometheus(url)

    return start
