"""A throw-away project for the stage tests: data files, params, dvc.yaml paths and a sqlite
MLflow store, with the DVC stages run in process (no `dvc repro`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlship.config import Params, Settings, parse_params
from mlship.paths import PipelinePaths
from mlship.stages import pipeline
from tests.conftest import raw_params, text_frame, write_dvc_file


@dataclass
class Project:
    root: Path
    paths: PipelinePaths
    dvc_file: Path
    params_file: Path
    settings: Settings

    def params(self, **sections: dict[str, Any]) -> Params:
        return parse_params(raw_params(**sections), self.params_file)

    def run_pipeline(self, params: Params, train_rows: Any = None) -> None:
        """ingest -> validate -> train -> evaluate, as `dvc repro` would run them."""
        train = self.root / "train.csv"
        (train_rows if train_rows is not None else text_frame(20)).to_csv(train, index=False)
        params = params.model_copy(
            update={"data": params.data.model_copy(update={
                "source": str(train), "test_source": str(self.root / "test.csv")})}
        )  # fmt: skip
        p = self.paths
        pipeline.ingest(params, p.train, p.test, p.ingest_report)
        assert pipeline.validate(params, p.train, p.test, p.contract_json, p.contract_md).passed
        pipeline.train(params, self.settings, p.train, p.model_dir)
        files = pipeline.EvaluationFiles.of(p)
        pipeline.evaluate(params, self.settings, p.model_dir, p.test, files)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.chdir(tmp_path)  # MLflow's local artifact folder is relative to the project
    text_frame(8).assign(review=lambda f: f.review + " later").to_csv(
        tmp_path / "test.csv", index=False
    )
    dvc_file = write_dvc_file(tmp_path)
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    params_file = tmp_path / "params.yaml"
    params_file.write_text("{}\n")
    settings = Settings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", model_name="reviews")  # type: ignore[call-arg]
    return Project(tmp_path, PipelinePaths.read(dvc_file), dvc_file, params_file, settings)
