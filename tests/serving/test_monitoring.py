"""The server watching its model: drift gauges from sampled requests, the sink's files,
POST /feedback with live accuracy, and the bandit between champion and challenger."""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from mlship.card import PROFILE_FILE, RegistryInfo
from mlship.config.params import DataParams
from mlship.monitor import drift
from mlship.monitor.sink import FEEDBACK_PREFIX, INPUTS_PREFIX, read_rows
from mlship.pipeline.artifacts import save_model
from mlship.pipeline.train import fit
from tests.conftest import make_params, text_frame
from tests.serving.conftest import card_for, make_client

WATCH = {"monitor_sample_rate": 1.0, "monitor_interval_seconds": 0.2, "monitor_seed": 1}


def _model(folder: Path, version: str = "1", flip: bool = False) -> Path:
    frame = text_frame(20)
    if flip:  # a worse model: trained on swapped labels
        frame["score"] = frame["score"].map({"great": "other", "other": "great"})
    card = card_for(["great", "other"]).updated(
        registry=RegistryInfo(name="mlship-model", version=version)
    )
    save_model(fit(make_params(), frame), card, folder)
    data = DataParams(source="-", text_columns=("review",), target="score")
    drift.profile(text_frame(200), data, ["great", "other"] * 200).save(folder / PROFILE_FILE)
    return folder


@pytest.fixture(scope="module")
def watched_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _model(tmp_path_factory.mktemp("watched"))


def _gauges(client: TestClient, name: str) -> dict[tuple[str, ...], float]:
    text = client.get("/metrics").text
    return {
        tuple(f"{k}={v}" for k, v in sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def _eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.1)


@pytest.fixture
def watched(watched_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    yield from make_client(watched_dir, **WATCH, monitor_sink=str(tmp_path / "sink"))


def test_foreign_inputs_raise_the_drift_gauges_and_reach_the_sink(
    watched: TestClient, tmp_path: Path
) -> None:
    rows = [{"review": f"zorg {i} blip quux wibble frob"} for i in range(250)]
    for start in range(0, 250, 50):  # up to 64 rows of each request are sampled
        assert watched.post("/predict", json=rows[start : start + 50]).status_code == 200
    assert watched.post("/predict", json=rows).status_code == 200  # adds its first 64
    flag = ("feature=review: known words", "model=mlship-model", "version=1")
    _eventually(lambda: _gauges(watched, "feature_drifted").get(flag) == 1.0)
    psi = _gauges(watched, "feature_drift")
    assert psi[(*flag[:2], "statistic=psi", flag[2])] > 0.2
    _eventually(lambda: any((tmp_path / "sink").glob(f"{INPUTS_PREFIX}*.jsonl")))
    _eventually(lambda: len(read_rows(str(tmp_path / "sink"), INPUTS_PREFIX)) == 314)
    sampled = read_rows(str(tmp_path / "sink"), INPUTS_PREFIX)
    assert set(sampled["_answer"]) <= {"great", "other"}
    assert watched.get("/model").json()["monitor"]["window_rows"] == {"mlship-model v1": 314}


def test_feedback_gives_live_accuracy(watched: TestClient, tmp_path: Path) -> None:
    ids = []
    for text in ["great taste, love it"] * 3 + ["stale and awful"] * 2:
        answer = watched.post("/predict", json={"review": text})
        ids.append((answer.headers["x-request-id"], answer.json()["label"]))
    for i, (request_id, label) in enumerate(ids):  # the last one is wrong
        truth = label if i < 4 else ("other" if label == "great" else "great")
        sent = watched.post("/feedback", json={"request_id": request_id, "label": truth})
        assert sent.status_code == 200, sent.text
    key = ("model=mlship-model", "version=1")
    _eventually(lambda: _gauges(watched, "live_accuracy").get(key) == pytest.approx(0.8))
    assert _gauges(watched, "live_feedback_rows")[key] == 5
    # the counters a canary's verdict compares between its tracks (ship/canary.py)
    rows = _gauges(watched, "feedback_rows_total")
    assert rows[(*key[:1], "outcome=correct", key[1])] == 4
    assert rows[(*key[:1], "outcome=wrong", key[1])] == 1
    confidence = _gauges(watched, "prediction_confidence_count")
    assert (
        confidence[key] == 5 and 0.5 <= _gauges(watched, "prediction_confidence_sum")[key] / 5 <= 1
    )
    _eventually(lambda: any((tmp_path / "sink").glob(f"{FEEDBACK_PREFIX}*.jsonl")))
    assert len(read_rows(str(tmp_path / "sink"), FEEDBACK_PREFIX)) == 5


def test_a_stopped_server_keeps_its_answers_and_removes_its_own_feedback_file(
    watched_dir: Path, tmp_path: Path
) -> None:
    from mlship.serving.feedback import FeedbackStore

    shared = tmp_path / "feedback.sqlite"
    for client in make_client(watched_dir, feedback_db=str(shared)):  # as workers share one
        answered = client.post("/predict", json={"review": "great taste"})
    # the answer was written at the stop, not lost with the last flush interval
    store = FeedbackStore(str(shared), 3600, 1000, 100)
    label = answered.json()["label"]
    request_id = answered.headers["x-request-id"]  # asked by the test client's address
    outcome = store.record(request_id, [label], classification=True, client="testclient")
    assert outcome.answers == [label]
    store.close()
    # one worker without a configured file: its own, removed when it stops
    before = set(Path(tempfile.gettempdir()).glob("mlship-feedback-*"))
    for client in make_client(watched_dir):
        assert client.post("/predict", json={"review": "great taste"}).status_code == 200
        assert len(set(Path(tempfile.gettempdir()).glob("mlship-feedback-*")) - before) == 1
    assert set(Path(tempfile.gettempdir()).glob("mlship-feedback-*")) == before


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (
            {"request_id": "never-answered", "label": "great"},
            404,
            "unknown, another client's, or older than",
        ),
        ({"request_id": "x", "value": 1.0}, 422, "this model is a classifier"),
        ({"request_id": "x"}, 422, "exactly one of 'label'"),
        ({"request_id": "", "label": "great"}, 422, "request_id"),
        ({"request_id": "x", "labels": []}, 422, "non-empty list"),
        ({"request_id": "x", "label": True}, 422, "not true/false"),
        ({"request_id": "x", "label": "<script>alert(1)</script>"}, 422, "model's classes"),
        ({"request_id": "x", "labels": ["great", "meh"]}, 422, "labels[1]: not one of"),
        (["not", "an", "object"], 422, "expected a JSON object"),
    ],
)
def test_bad_feedback_is_a_4xx_that_says_why(
    watched: TestClient, body: object, status: int, says: str
) -> None:
    answer = watched.post("/feedback", json=body)
    assert answer.status_code == status and says in answer.json()["detail"]


def test_feedback_cannot_be_forged_for_another_clients_request(watched: TestClient) -> None:
    # server-made request ids are random, not a prefix and a counter
    made = [
        watched.post("/predict", json={"review": "great"}).headers["x-request-id"] for _ in "ab"
    ]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in made)
    assert len(set(made)) == 2 and made[0][:8] != made[1][:8]
    # given a victim's answer under its own X-Request-ID
    victim = watched.post(
        "/predict", json={"review": "great taste, love it"}, headers={"X-Request-ID": "order-17"}
    )
    label = victim.json()["label"]
    # when an attacker reuses that id for a request answered differently
    watched.post(
        "/predict", json={"review": "stale and awful"}, headers={"X-Request-ID": "order-17"}
    )
    # then the victim's answer stays the one a feedback is scored against
    wrong = "other" if label == "great" else "great"
    first = watched.post("/feedback", json={"request_id": "order-17", "label": label})
    assert first.status_code == 200
    # and the request takes no second feedback: a flood of wrong ones cannot follow
    again = watched.post("/feedback", json={"request_id": "order-17", "label": wrong})
    assert again.status_code == 409 and "already has its feedback" in again.json()["detail"]
    duplicates = _gauges(watched, "feedback_answers_total")
    assert duplicates[("outcome=duplicate_id",)] == 1


def test_feedback_for_a_batch_needs_one_label_per_row(watched: TestClient) -> None:
    answer = watched.post("/predict", json=[{"review": "great"}, {"review": "awful"}])
    request_id = answer.headers["x-request-id"]
    short = watched.post("/feedback", json={"request_id": request_id, "labels": ["great"]})
    assert short.status_code == 422 and "answered for 2 row(s)" in short.json()["detail"]
    both = watched.post("/feedback", json={"request_id": request_id, "labels": ["great", "other"]})
    assert both.status_code == 200 and both.json()["rows"] == 2


def test_feedback_can_be_turned_off(watched_dir: Path) -> None:
    for client in make_client(watched_dir, feedback_seconds=0):
        answer = client.post("/feedback", json={"request_id": "a", "label": "great"})
        assert answer.status_code == 404 and "feedback is off" in answer.json()["detail"]


def test_the_bandit_moves_traffic_to_the_version_with_better_feedback(
    watched_dir: Path, tmp_path: Path
) -> None:
    from mlship.choices import ChallengerMode
    from mlship.config.settings import Settings
    from mlship.serving.app import create_app
    from mlship.serving.options import Challenger
    from tests.serving.conftest import wait_ready

    worse = _model(tmp_path / "worse", version="2", flip=True)
    settings = Settings(**WATCH, bandit_floor=0.05, bandit_cap=0.95)  # type: ignore[arg-type]
    app = create_app(str(watched_dir), settings, Challenger(str(worse), ChallengerMode.bandit))
    texts = {"great": "great taste, love it", "other": "stale and awful"}
    with TestClient(app) as client:
        wait_ready(client)
        for _ in range(60):  # the truth is what the champion (trained on true labels) says
            for truth, text in texts.items():
                answer = client.post("/predict", json={"review": text})
                client.post(
                    "/feedback", json={"request_id": answer.headers["x-request-id"], "label": truth}
                )
        _eventually(lambda: client.get("/model").json()["bandit"]["challenger_share"] == 0.05)
        described = client.get("/model").json()
        assert described["challenger_mode"] == "bandit"
        posteriors = described["bandit"]["posteriors"]
        assert posteriors["champion"]["mean"] > 0.9 > 0.1 > posteriors["challenger"]["mean"]
        shares = _gauges(client, "bandit_share")
        assert shares[("model=mlship-model", "role=challenger", "version=2")] == 0.05
