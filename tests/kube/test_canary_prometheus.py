"""`mlship deploy --canary` on the real control plane (as the CI deployer), judged by a real
Prometheus scraping real mlship servers.

The traffic, the servers' metrics, their scrape, the PromQL the canary analysis asks and the
Kubernetes objects it moves are all real. Two servers run: a healthy one and one whose model
cannot load (it answers 503). Prometheus labels them as a Kubernetes scrape of the app's
namespace would (namespace, pod), so which server is the canary's pod is only a label, and
each test also proves the queries look at the canary's pods alone."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from mlship.pipeline.artifacts import save_model
from mlship.pipeline.train import fit
from mlship.ship.rollout import (
    CanaryBudget,
    DeployReport,
    Kubectl,
    Prometheus,
    Target,
    canary_deploy,
)
from tests.conftest import make_params, text_frame
from tests.kube.conftest import App
from tests.kube.fixtures import Images
from tests.prometheus.conftest import RealPrometheus, Scrape
from tests.serving.conftest import card_for
from tests.serving.live import running_server

pytestmark = pytest.mark.kube

BUDGET = CanaryBudget(max_error_ratio=0.01, max_p99_ms=250, settle_seconds=3)
ROW = {"review": "great taste, would buy again"}
Start = Callable[[list[Scrape]], AbstractContextManager[RealPrometheus]]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    save_model(fit(make_params(), text_frame(20)), card_for(["great", "other"]), folder)
    return folder


@contextmanager
def load(url: str) -> Iterator[collections.Counter[int]]:
    """Single-row /predict requests, about 30 a second, until the block ends."""
    statuses: collections.Counter[int] = collections.Counter()
    stop = threading.Event()

    def post() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                statuses[client.post(f"{url}/predict", json=ROW).status_code] += 1
                stop.wait(0.03)

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    try:
        yield statuses
    finally:
        stop.set()
        thread.join(timeout=15)


def _scraped(prometheus: RealPrometheus, pod: str, timeout: float = 60) -> None:
    """Wait until a rate over the pod's requests exists (two scrapes with traffic)."""
    query = f'rate(http_requests_total{{pod="{pod}",route="/predict"}}[2m])'
    deadline = time.monotonic() + timeout
    while prometheus.samples(query) == 0:
        assert time.monotonic() < deadline, f"Prometheus never scraped {pod}"
        time.sleep(0.5)


def _canary_on(
    canary_is_healthy: bool,
    model_dir: Path,
    tmp_path: Path,
    prometheus: Start,
    app: App,
    image: str,
) -> tuple[DeployReport, list[collections.Counter[int]]]:
    target = Target(app.namespace)
    with ExitStack() as stack:
        healthy = stack.enter_context(running_server("--model", str(model_dir)))
        broken = stack.enter_context(
            running_server(
                "--model",
                "models:/absent@champion",
                probe="/health",
                env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/empty.db"},
            )
        )
        sent = [stack.enter_context(load(url)) for url in (healthy, broken)]
        canary, stable = (healthy, broken) if canary_is_healthy else (broken, healthy)
        real = stack.enter_context(
            prometheus(
                [
                    {
                        "target": canary.removeprefix("http://"),
                        "namespace": target.namespace,
                        "pod": "mlship-canary-7d9f8-x2k4q",
                    },
                    {
                        "target": stable.removeprefix("http://"),
                        "namespace": target.namespace,
                        "pod": "mlship-6c5b7-q8w2m",
                    },
                ]
            )
        )
        _scraped(real, "mlship-canary-7d9f8-x2k4q")
        _scraped(real, "mlship-6c5b7-q8w2m")
        report = canary_deploy(
            Kubectl(target.namespace),
            target,
            "staging",
            image,
            "1",
            Prometheus(real.url),
            BUDGET,
            30,
        )
    return report, sent


def _judged(report: DeployReport) -> dict[str, str]:
    return {s.name: s.detail for s in report.steps if s.name.endswith("%")}


@pytest.fixture
def as_deployer(app: App, monkeypatch: pytest.MonkeyPatch) -> App:
    for name, value in app.env().items():  # kubectl as the CI deployer, in-process
        if name in ("KUBECONFIG", "PATH"):
            monkeypatch.setenv(name, value)
    return app


def test_a_healthy_canary_beside_a_failing_stable_is_promoted(
    model_dir: Path,
    tmp_path: Path,
    prometheus: Start,
    as_deployer: App,
    images: Images,
) -> None:
    app = as_deployer
    report, (to_healthy, to_broken) = _canary_on(
        True, model_dir, tmp_path, prometheus, app, str(images.next)
    )
    assert report.ok, report.markdown()
    assert list(_judged(report)) == ["canary 10%", "canary 50%", "canary 100%"]
    for detail in _judged(report).values():
        assert detail.startswith("error ratio 0.0000") and "p99" in detail
    assert set(to_healthy) == {200} and set(to_broken) == {503}  # both really ran
    assert app.image() == str(images.next)


def test_a_canary_failing_its_requests_is_stopped_at_the_first_step(
    model_dir: Path,
    tmp_path: Path,
    prometheus: Start,
    as_deployer: App,
    images: Images,
) -> None:
    app = as_deployer
    report, _ = _canary_on(False, model_dir, tmp_path, prometheus, app, str(images.next))
    assert report.rolled_back and not report.ok
    assert _judged(report) == {"canary 10%": "error ratio 1.0000 (max 0.01)"}
    assert app.image() == str(images.running)  # stable never took the image
