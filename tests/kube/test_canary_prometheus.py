"""`mlship deploy --canary`'s analysis on real figures: the canary's and stable's pods on the
real node, real requests sent through the Gateway (Traefik) at about 30 a second, split by
the HTTPRoute's weights, and Prometheus discovering the pods through the API server and
scraping them (tests/kube/scrape.py) — the PromQL the canary asks reads what was scraped,
by the canary's pods alone. A canary of the same model is promoted; one whose server takes
300 ms more per call is stopped at its first step, by its p99."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlship.ship.rollout import (
    CanaryBudget,
    DeployReport,
    Kubectl,
    Prometheus,
    Target,
    canary_deploy,
)
from tests.kube.conftest import App
from tests.kube.fixtures import Images, ServedImage
from tests.kube.images import Reference
from tests.kube.scrape import scraping

pytestmark = pytest.mark.kube

BUDGET = CanaryBudget(max_error_ratio=0.01, max_p99_ms=250, settle_seconds=6)


@contextmanager
def load(url: str, row: dict[str, Any]) -> Iterator[collections.Counter[int]]:
    """Single-row /predict requests through the Gateway, about 30 a second, until the block
    ends: the statuses they got."""
    statuses: collections.Counter[int] = collections.Counter()
    stop = threading.Event()

    def post() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    statuses[client.post(f"{url}/predict", json=row).status_code] += 1
                except httpx.HTTPError:
                    statuses[0] += 1
                stop.wait(0.03)

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    try:
        yield statuses
    finally:
        stop.set()
        thread.join(timeout=15)


@pytest.fixture
def as_deployer(app: App, monkeypatch: pytest.MonkeyPatch) -> App:
    for name, value in app.env().items():  # kubectl as the CI deployer, in-process
        if name in ("KUBECONFIG", "PATH"):
            monkeypatch.setenv(name, value)
    return app


def _canary(
    app: App, image: Reference, served_image: ServedImage, tmp_path: Path
) -> tuple[DeployReport, collections.Counter[int], list[str]]:
    target = Target(app.namespace)
    row = served_image.card["example"]
    with scraping(app.cluster, app.namespace, tmp_path / "prometheus") as prometheus:
        with load(app.gateway.url, row) as statuses:
            report = canary_deploy(
                Kubectl(target.namespace),
                target,
                "staging",
                str(image),
                image.tag.rsplit("-m", 1)[1],
                row,
                Prometheus(prometheus.url),
                BUDGET,
                60,
            )
        scraped = sorted(
            {
                series["metric"]["pod"]
                for series in httpx.get(
                    f"{prometheus.url}/api/v1/query",
                    params={"query": 'http_requests_total{route="/predict"}'},
                ).json()["data"]["result"]
            }
        )
    return report, statuses, scraped


def _judged(report: DeployReport) -> dict[str, str]:
    return {s.name: s.detail for s in report.steps if s.name.endswith("%")}


def test_a_canary_of_the_same_model_is_judged_on_its_own_pods_and_promoted(
    as_deployer: App, images: Images, served_image: ServedImage, tmp_path: Path
) -> None:
    app = as_deployer
    started = time.monotonic()
    report, statuses, scraped = _canary(app, images.second, served_image, tmp_path)
    assert report.ok, report.markdown()
    assert list(_judged(report)) == ["canary 10%", "canary 50%"]
    for detail in _judged(report).values():
        assert detail.startswith("error ratio 0.0000") and "p99" in detail
    assert set(statuses) == {200}, statuses  # every client request answered, all along
    assert any(pod.startswith("mlship-canary-") for pod in scraped), scraped
    assert app.image() == str(images.second)
    print(f"\ncanary promoted in {time.monotonic() - started:.0f} s: {_judged(report)}")


def test_a_slow_canary_is_stopped_at_its_first_step_by_its_p99(
    as_deployer: App, images: Images, served_image: ServedImage, tmp_path: Path
) -> None:
    app = as_deployer
    report, statuses, _ = _canary(app, images.slow, served_image, tmp_path)
    assert report.rolled_back and not report.ok
    judged = _judged(report)
    assert list(judged) == ["canary 10%"], report.markdown()
    assert (
        judged["canary 10%"].startswith("error ratio 0.0000")
        and "(max 250)" in judged["canary 10%"]
    )
    assert set(statuses) == {200}, statuses
    assert app.image() == str(images.running)  # stable never took the image
