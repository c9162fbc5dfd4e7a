"""Bad input through the real CLI: a message naming the problem, the exit code, and no
output written or lost."""

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from mlship.cli import app
from tests.conftest import raw_params, text_frame, write_dvc_file

runner = CliRunner()


def _write_params(folder: Path, raw: dict[str, Any]) -> Path:
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _ingest(folder: Path, raw: dict[str, Any]) -> Any:
    params = _write_params(folder, raw)
    return runner.invoke(
        app,
        [
            "ingest",
            "--params",
            str(params),
            "--train-out",
            str(folder / "out/train.parquet"),
            "--test-out",
            str(folder / "out/test.parquet"),
            "--report",
            str(folder / "out/ingest.json"),
        ],
    )


def _gzipped(frame: pd.DataFrame) -> bytes:
    import gzip

    return gzip.compress(frame.to_csv(index=False).encode())


def _with_sources(folder: Path, train: bytes | pd.DataFrame | None, **data: Any) -> dict[str, Any]:
    """Params whose train source is a file in `folder` holding `train`."""
    source = folder / data.pop("name", "train.csv")
    if isinstance(train, pd.DataFrame):
        train.to_csv(source, index=False)
    elif train is not None:
        source.write_bytes(train)
    test = folder / "test.csv"
    text_frame(3).assign(review=lambda f: f.review + " later").to_csv(test, index=False)
    return raw_params(data={"source": str(source), "test_source": str(test), **data})


@pytest.mark.parametrize(
    ("case", "build", "message"),
    [
        (
            "unknown key",
            lambda d: raw_params(data={"targett": "score"}),
            "data.targett: unknown key",
        ),
        (
            "wrong type",
            lambda d: raw_params(train={"model": {"kind": "logistic_regression", "C": "big"}}),
            "train.model.C",
        ),
        (
            "missing column",
            lambda d: _with_sources(d, text_frame(5).rename(columns={"review": "text"})),
            "missing declared column(s) review",
        ),
        ("empty file", lambda d: _with_sources(d, b""), "file is empty"),
        ("missing file", lambda d: _with_sources(d, None), "file not found"),
        (
            "truncated gzip",
            lambda d: _with_sources(d, _gzipped(text_frame(50))[:200], name="train.csv.gz"),
            "the file is truncated or damaged",
        ),
        (
            "unreadable file",
            lambda d: _with_sources(d, b"\x00garbage", name="train.parquet"),
            "cannot read it as a table",
        ),
    ],
)
def test_ingest_rejects_bad_input_and_writes_nothing(
    tmp_path: Path, case: str, build: Any, message: str
) -> None:
    # given an earlier good output and one bad input
    earlier = tmp_path / "out/ingest.json"
    earlier.parent.mkdir()
    earlier.write_text('{"earlier": true}')
    # when ingest runs
    result = _ingest(tmp_path, build(tmp_path))
    # then it exits 2 naming the problem, and the earlier output is intact
    assert result.exit_code == 2, (case, result.output)
    assert message in " ".join(result.stderr.split()), case
    assert earlier.read_text() == '{"earlier": true}'
    assert sorted(p.name for p in earlier.parent.iterdir()) == ["ingest.json"]


@pytest.mark.parametrize(
    ("case", "labels", "rule"),
    [
        ("single class", ["great"] * 10, "class_count"),
        ("NaN labels", [None] + ["great", "other"] * 4 + ["other"], "label_nulls"),
    ],
)
def test_unlearnable_labels_fail_the_contract_and_training(
    tmp_path: Path, case: str, labels: list[str | None], rule: str
) -> None:
    # given ingested data whose labels cannot train a classifier
    raw = _with_sources(tmp_path, text_frame(5).assign(score=labels))
    assert _ingest(tmp_path, raw).exit_code == 0, case
    out = tmp_path / "out"
    # when validated / then the contract fails with exit 1 naming the rule
    validated = runner.invoke(
        app,
        [
            "validate",
            "--params",
            str(tmp_path / "params.yaml"),
            "--train",
            str(out / "train.parquet"),
            "--test",
            str(out / "test.parquet"),
            "--report-json",
            str(out / "validate.json"),
            "--report-md",
            str(out / "validate.md"),
        ],
    )
    assert validated.exit_code == 1, validated.output
    assert f"train.score: {rule}" in validated.stderr
    assert (out / "validate.md").read_text().startswith("# Data contract: FAILED")
    # when trained anyway / then training refuses with exit 2 and writes no model
    trained = runner.invoke(
        app,
        [
            "train",
            "--params",
            str(tmp_path / "params.yaml"),
            "--train",
            str(out / "train.parquet"),
            "--model-dir",
            str(tmp_path / "models"),
        ],
    )
    assert trained.exit_code == 2, trained.output
    assert "target column 'score'" in trained.stderr
    assert not (tmp_path / "models").exists()


def test_missing_params_file_and_missing_flag(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "validate",
            "--params",
            str(tmp_path / "nope.yaml"),
            "--train",
            "a",
            "--test",
            "b",
            "--report-json",
            "c",
            "--report-md",
            "d",
        ],
    )
    assert result.exit_code == 2
    assert "nope.yaml: params file not found" in result.stderr
    assert runner.invoke(app, ["train"]).exit_code == 2  # a required flag is missing


def test_bad_environment_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSHIP_LOG_LEVEL", "LOUD")
    result = runner.invoke(app, ["summary", "--dvc-file", "absent.yaml"])
    assert result.exit_code == 2
    assert "log_level" in result.stderr


def test_image_build_names_a_missing_engine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # given a project, and a Docker host that does not exist
    monkeypatch.chdir(tmp_path)
    _write_params(tmp_path, raw_params())
    write_dvc_file(tmp_path)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    # when building / then exit 3 (a service did not answer) naming the engine; with
    # --skip-without-engine, exit 0 and why
    failed = runner.invoke(app, ["image", "build"])
    assert failed.exit_code == 3
    assert (
        "no Docker engine is reachable at unix:///nonexistent/docker.sock (nothing listens there)"
    ) in failed.stderr
    skipped = runner.invoke(app, ["image", "build", "--skip-without-engine"])
    assert skipped.exit_code == 0
    assert "image step not run" in skipped.stderr


class _Engine:
    """A Docker engine without the base image, whose registry cannot be reached."""

    def __init__(self) -> None:
        self.images = self

    def get(self, name: str) -> None:
        from docker.errors import ImageNotFound

        raise ImageNotFound(f"No such image: {name}")

    def pull(self, name: str) -> None:
        from docker.errors import APIError

        raise APIError("Get https://registry/v2/: dial tcp: lookup registry: no such host")


def test_a_base_image_that_cannot_be_pulled_skips_the_image_with_a_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mlship.ship import image

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLSHIP_BASE_IMAGE", raising=False)  # CI's own base: the default here
    _write_params(tmp_path, raw_params())
    write_dvc_file(tmp_path)
    monkeypatch.setattr(image, "engine", _Engine)
    failed = runner.invoke(app, ["image", "build"])
    assert failed.exit_code == 3
    assert "the base image python:3.11-slim-bookworm is not on this Docker engine" in failed.stderr
    assert "set MLSHIP_BASE_IMAGE to an image the engine has" in failed.stderr
    skipped = runner.invoke(app, ["image", "build", "--skip-without-engine"])
    assert skipped.exit_code == 0, skipped.stderr
    assert "image step not run: the base image" in skipped.stderr
    assert not (tmp_path / "reports" / "image.json").exists()


def test_train_names_a_missing_column(tmp_path: Path) -> None:
    params = _write_params(tmp_path, raw_params())
    split = tmp_path / "train.parquet"
    text_frame(5).rename(columns={"review": "text"}).to_parquet(split)
    result = runner.invoke(
        app,
        [
            "train",
            "--params",
            str(params),
            "--train",
            str(split),
            "--model-dir",
            str(tmp_path / "models"),
        ],
    )
    assert result.exit_code == 2
    assert "missing declared column(s) review" in result.stderr
    assert not (tmp_path / "models").exists()


def test_deploy_refuses_bad_flags_and_unpushed_images(tmp_path: Path) -> None:
    assert runner.invoke(app, ["deploy", "--env", "qa"]).exit_code == 2
    built = tmp_path / "image.json"
    built.write_text(
        '{"id": "sha256:1", "references": ["r/mlship:0123456789ab-m3"], '
        '"labels": {}, "size_bytes": 1, "pushed": false}'
    )
    dvc = write_dvc_file(tmp_path, image_json=built)
    result = runner.invoke(app, ["deploy", "--env", "staging", "--dvc-file", str(dvc)])
    assert result.exit_code == 2 and "was not pushed" in result.stderr
    untagged = runner.invoke(
        app, ["deploy", "--env", "staging", "--image", "r/mlship:latest", "--dvc-file", str(dvc)]
    )
    assert untagged.exit_code == 2 and "<gitsha>-m<version>" in untagged.stderr


def test_canary_needs_prometheus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLSHIP_PROMETHEUS_URL", raising=False)
    model = tmp_path / "m"
    model.mkdir()
    (model / "model_card.json").write_text('{"features": {"text": ["review"]}, "target": "s"}')
    text_frame(2).to_parquet(tmp_path / "test.parquet")
    dvc = write_dvc_file(tmp_path, model_dir=model, test=tmp_path / "test.parquet")
    result = runner.invoke(
        app,
        [
            "deploy",
            "--env",
            "staging",
            "--canary",
            "--dvc-file",
            str(dvc),
            "--image",
            "r/mlship:0123456789ab-m3",
        ],
    )
    assert result.exit_code == 2 and "--prometheus-url" in result.stderr


def test_score_writes_every_row_with_its_label(tmp_path: Path) -> None:
    from mlship.card import Features, ModelCard
    from mlship.pipeline.artifacts import save_model
    from mlship.pipeline.train import fit
    from tests.conftest import make_params

    model = tmp_path / "model"
    card = ModelCard(features=Features(text=("review",)), target="score")
    save_model(fit(make_params(), text_frame(10)), card, model)
    rows = text_frame(3)
    rows.to_csv(tmp_path / "in.csv", index=False)
    out = tmp_path / "out.csv"
    source = str(tmp_path / "in.csv")
    result = runner.invoke(
        app,
        [
            "score",
            "--model",
            str(model),
            "--input",
            source,
            "--output",
            str(out),
            "--chunk-rows",
            "4",
        ],
    )
    assert result.exit_code == 0, result.stderr
    scored = pd.read_csv(out)
    assert len(scored) == 6 and list(scored.columns[-4:]) == [
        "label",
        "confidence",
        "proba_great",
        "proba_other",
    ]
    assert (scored["label"] == scored["score"]).all()
    assert not (tmp_path / "out.refused.csv").exists()
    # rows with no review: kept apart with the reason; the others scored
    rows.assign(review=["fine", None, "bad", None, "ok", "great"]).to_csv(
        tmp_path / "bad.csv", index=False
    )
    bad = [
        "score",
        "--model",
        str(model),
        "--input",
        str(tmp_path / "bad.csv"),
        "--output",
        str(tmp_path / "x.csv"),
    ]
    kept = runner.invoke(app, bad)
    assert kept.exit_code == 0 and "2 rows refused" in kept.stderr, kept.stderr
    assert len(pd.read_csv(tmp_path / "x.csv")) == 4
    refused = pd.read_csv(tmp_path / "x.refused.csv")
    assert refused["refused_reason"].tolist() == ["review: expected text, got NoneType"] * 2
    # or the first stops the run, and nothing is written
    (tmp_path / "x.csv").unlink()
    stopped = runner.invoke(app, [*bad, "--fail-fast"])
    assert stopped.exit_code == 2 and "review: expected text" in stopped.stderr
    assert not (tmp_path / "x.csv").exists()
