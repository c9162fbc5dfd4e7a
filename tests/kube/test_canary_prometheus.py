"""`mlship deploy --canary`'s analysis on real figures: the canary's and stable's pods on the
real node, real requests sent through the Gateway (Traefik) at about 60 a second, split by
the HTTPRoute's weights, and Prometheus discovering the pods through the API server and
scraping them (tests/kube/scrape.py) — each track's counters read from what was scraped of
its own pods, and judged canary against stable by the always-valid tests (ship/canary.py).
A canary of the same model is promoted; one whose server takes 300 ms more per call is
aborted at its first step, on its latency."""

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

from mlship.config.params import CanaryParams
from mlship.ship.canary import from_prometheus
from mlship.ship.rollout import DeployReport, Kubectl, Target, canary_deploy
from tests.kube.conftest import App
from tests.kube.fixtures import Images, ServedImage
from tests.kube.images import Reference
from tests.kube.scrape import scraping

pytestmark = pytest.mark.kube

# looser than the defaults so that a step needs tens of seconds, not minutes: an error
# ratio within 5 points and P(slower) within 0.65 are shown with about a hundred requests
CRITERIA = CanaryParams(
    look_seconds=3,
    min_requests=30,
    max_wait_seconds=120,
    max_error_increase=0.05,
    max_slower_probability=0.65,
)


@contextmanager
def load(url: str, row: dict[str, Any]) -> Iterator[collections.Counter[int]]:
    """Single-row /predict requests through the Gateway from two clients, about 60 a second,
    until the block ends: the statuses they got."""
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

    threads = [threading.Thread(target=post, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        yield statuses
    finally:
        stop.set()
        for thread in threads:
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
                lambda: from_prometheus(
                    prometheus.url, target.namespace, target.deployment, CRITERIA, 0
                ).run(),
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
        assert detail.startswith("promote after") and "errors within" in detail, detail
        assert "latency within" in detail and "estimated accuracy within" in detail, detail
    assert set(statuses) == {200}, statuses  # every client request answered, all along
    assert any(pod.startswith("mlship-canary-") for pod in scraped), scraped
    assert app.image() == str(images.second)
    print(f"\ncanary promoted in {time.monotonic() - started:.0f} s: {_judged(report)}")


def test_a_slow_canary_is_aborted_at_its_first_step_on_its_latency(
    as_deployer: App, images: Images, served_image: ServedImage, tmp_path: Path
) -> None:
    app = as_deployer
    report, statuses, _ = _canary(app, images.slow, served_image, tmp_path)
    assert report.rolled_back and not report.ok
    judged = _judged(report)
    assert list(judged) == ["canary 10%"], report.markdown()
    assert judged["canary 10%"].startswith("abort after"), judged
    assert "worse: latency" in judged["canary 10%"] and "latency beyond" in judged["canary 10%"]
    assert set(statuses) == {200}, statuses
    assert app.image() == str(images.running)  # stable never took the image
