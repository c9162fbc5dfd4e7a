"""Each protocol's documented request and error shapes, in process."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

GOOD = "great taste, would buy again"
BAD = "stale and bland, awful"


def test_probes_and_model_information(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json()["status"] == "ready"
    info = client.get("/model").json()
    assert info["name"] == "mlship-model"
    assert info["git_sha"] == "abc123" and info["run_id"] == "run-1"
    assert info["classes"] == ["great", "other"]
    assert client.get("/docs").status_code == 200


def test_predict_one_object_and_a_list(client: TestClient) -> None:
    one = client.post("/predict", json={"review": GOOD}).json()
    assert one["label"] == "great" and 0.5 < one["confidence"] <= 1
    assert set(one["probabilities"]) == {"great", "other"}
    assert one["version"] == "local"
    many = client.post("/predict", json=[{"review": GOOD}, {"review": BAD}] * 5).json()
    assert [p["label"] for p in many["predictions"]] == ["great", "other"] * 5


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"revue": GOOD}, "unknown field(s) ['revue']"),
        ({}, "body: missing required field(s) ['review']"),
        ({"review": 3}, "body[0].review: expected text"),
        ([], "body: no rows"),
        ("just text", "expected a list of objects"),
    ],
)
def test_predict_rejects_bad_bodies_with_422_naming_the_field(
    client: TestClient, body: object, message: str
) -> None:
    answer = client.post("/predict", json=body)
    assert answer.status_code == 422
    assert message in answer.json()["detail"]


def test_predict_rejects_invalid_json(client: TestClient) -> None:
    answer = client.post(
        "/predict", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422
    assert "invalid JSON" in answer.json()["detail"]


@pytest.mark.parametrize(
    "payload",
    [
        {"dataframe_split": {"columns": ["review"], "data": [[GOOD], [BAD]]}},
        {"dataframe_records": [{"review": GOOD}, {"review": BAD}]},
        {"instances": [{"review": GOOD}, {"review": BAD}]},
        {"inputs": {"review": [GOOD, BAD]}},
        {"inputs": [GOOD, BAD]},
        {"dataframe_records": [{"review": GOOD}, {"review": BAD}], "params": {"ignored": 1}},
    ],
)
def test_mlflow_json_formats(client: TestClient, payload: dict[str, object]) -> None:
    answer = client.post("/invocations", json=payload)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": ["great", "other"]}


def test_mlflow_csv(client: TestClient) -> None:
    body = f'review\n"{GOOD}"\n"{BAD}"\n'
    answer = client.post("/invocations", content=body, headers={"content-type": "text/csv"})
    assert answer.json() == {"predictions": ["great", "other"]}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"dataframe_records": [{"review": GOOD}], "instances": [{"review": GOOD}]}, "exactly one"),
        ({"records": []}, "exactly one"),
        ({"dataframe_split": {"columns": ["review"]}}, "'columns' and 'data'"),
        ({"dataframe_split": {"columns": ["review"], "data": [[1, 2]]}}, "expected 1 values"),
        ({"dataframe_records": [{"text": GOOD}]}, "unknown field(s) ['text']"),
    ],
)
def test_mlflow_errors_use_mlflows_shape(
    client: TestClient, payload: dict[str, object], message: str
) -> None:
    answer = client.post("/invocations", json=payload)
    assert answer.status_code == 400
    assert answer.json()["error_code"] == "BAD_REQUEST"
    assert message in answer.json()["message"]


def test_mlflow_refuses_other_content_types(client: TestClient) -> None:
    answer = client.post("/invocations", content=b"x", headers={"content-type": "text/plain"})
    assert answer.status_code == 415
    assert answer.json()["error_code"] == "BAD_REQUEST"


def test_v2_server_and_model_metadata(client: TestClient) -> None:
    assert client.get("/v2").json()["name"] == "mlship"
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    meta = client.get("/v2/models/mlship-model").json()
    assert meta["inputs"] == [{"name": "review", "datatype": "BYTES", "shape": [-1]}]
    assert {o["name"] for o in meta["outputs"]} == {"label", "probabilities"}
    assert client.get("/v2/models/mlship-model/ready").json()["ready"] is True
    assert client.get("/v2/models/other/ready").status_code == 404


def test_v2_infer_echoes_the_id(client: TestClient) -> None:
    request = {
        "id": "req-7",
        "inputs": [{"name": "review", "shape": [2], "datatype": "BYTES", "data": [GOOD, BAD]}],
    }
    answer = client.post("/v2/models/mlship-model/infer", json=request).json()
    assert answer["id"] == "req-7"
    assert answer["model_name"] == "mlship-model"
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["label"]["data"] == ["great", "other"]
    assert outputs["probabilities"]["shape"] == [2, 2]
    only = client.post(
        "/v2/models/mlship-model/infer", json={**request, "outputs": [{"name": "label"}]}
    ).json()
    assert [o["name"] for o in only["outputs"]] == ["label"]


@pytest.mark.parametrize(
    ("request_body", "status", "message"),
    [
        (
            {"inputs": [{"name": "review", "shape": [2], "datatype": "BYTES", "data": [GOOD]}]},
            400,
            "needs 2 values",
        ),
        (
            {"inputs": [{"name": "review", "shape": [1], "datatype": "TEXT", "data": [GOOD]}]},
            400,
            "datatype",
        ),
        (
            {"inputs": [{"name": "body", "shape": [1], "datatype": "BYTES", "data": [GOOD]}]},
            400,
            "unknown field(s) ['body']",
        ),
        ({"outputs": []}, 400, "'inputs' list"),
    ],
)
def test_v2_errors(client: TestClient, request_body: object, status: int, message: str) -> None:
    answer = client.post("/v2/models/mlship-model/infer", json=request_body)
    assert answer.status_code == status
    assert message in answer.json()["error"]


def test_v2_unknown_model_is_404(client: TestClient) -> None:
    answer = client.post("/v2/models/nope/infer", json={"inputs": []})
    assert answer.status_code == 404 and "unknown model" in answer.json()["error"]


def test_size_limits_answer_413_with_a_message(client: TestClient) -> None:
    # more rows than allowed (50), on every protocol
    rows = [{"review": GOOD}] * 51
    answer = client.post("/predict", json=rows)
    assert answer.status_code == 413 and "limit of 50" in answer.json()["detail"]
    answer = client.post("/invocations", json={"dataframe_records": rows})
    assert answer.status_code == 413 and answer.json()["error_code"] == "BAD_REQUEST"
    # a body larger than allowed (20 kB), with and without a content-length
    big = {"review": "x" * 30_000}
    answer = client.post("/predict", json=big)
    assert answer.status_code == 413 and "20000 bytes" in answer.json()["detail"]

    def chunks() -> object:
        yield b'{"review": "'
        for _ in range(30):
            yield b"x" * 1000
        yield b'"}'

    answer = client.post("/predict", content=chunks())  # type: ignore[arg-type]
    assert answer.status_code == 413


def test_request_ids_are_echoed_or_made(client: TestClient) -> None:
    given = client.get("/health", headers={"X-Request-ID": "trace-1"})
    assert given.headers["x-request-id"] == "trace-1"
    assert len(client.get("/health").headers["x-request-id"]) == 32


def test_metrics_in_prometheus_text(client: TestClient) -> None:
    client.post("/predict", json=[{"review": GOOD}, {"review": BAD}])
    text = client.get("/metrics").text
    for name in (
        'predictions_total{model="mlship-model",status="ok",version="local"}',
        "prediction_latency_seconds_bucket",
        'predicted_class_total{label="great",model="mlship-model",version="local"}',
        'http_requests_total{method="POST",route="/predict",status="200"}',
        "http_requests_in_flight",
        'model_info{alias="",git_sha="abc123",model="mlship-model",version="local"} 1.0',
        "batch_rows_bucket",
    ):
        assert name in text, name
