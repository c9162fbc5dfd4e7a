"""Shared builders: small frames and params that each test can adjust."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from mlship.config.params import Params, parse_params
from mlship.config.settings import Settings
from mlship.paths import PipelinePaths
from mlship.project import Project as StageProject
from mlship.stages import pipeline

REPO = Path(__file__).resolve().parents[1]
# fixtures used under more than one folder, defined once so that each runs once per session
pytest_plugins = ["tests.kube.fixtures"]

# `make test` runs the suite in two processes (pytest-xdist). The tests that share the
# Kubernetes cluster, the served image and act's cache run in one process, in order; each
# other module's tests run together, so that its fixtures are made once. The cluster's tests
# mostly wait (rollouts, image builds on vfs), the others mostly compute.
SHARED_CLUSTER = ("tests/kube/", "tests/e2e/", "tests/ci/test_act.py")


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's scheduling by module, the cluster's modules taken as one. (Not
    `--dist loadgroup`: its marks set a node id that pytest 9 no longer reads.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ClusterApart(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "cluster" if module.startswith(SHARED_CLUSTER) else module

    return ClusterApart(config, log)


# Tests behave the same under any CI: what says where the pipeline runs, under which CI and
# who approved is removed from their environment; only the test run's own controls stay.
TEST_CONTROLS = {
    "MLSHIP_BASE_IMAGE",
    "MLSHIP_REQUIRE_DOCKER",
    "MLSHIP_REQUIRE_TOOLS",
    "MLSHIP_TEST_REGISTRY",
    "MLSHIP_CI_STATE",
}
CI_PREFIXES = ("MLSHIP_", "MLFLOW_", "DVC_", "GITHUB_", "JENKINS_", "BUILD_")
CI_NAMES = {"APPROVER", "PROJECT_ID", "GOOGLE_CLOUD_PROJECT", "KUBECONFIG"}


def _from_the_ci(name: str) -> bool:
    return (name.startswith(CI_PREFIXES) or name in CI_NAMES) and name not in TEST_CONTROLS


def hermetic_env() -> dict[str, str]:
    """os.environ without the CI's and the deployment's variables, for subprocesses."""
    return {name: value for name, value in os.environ.items() if not _from_the_ci(name)}


def write_dvc_file(folder: Path, **paths: Path) -> Path:
    """folder/dvc.yaml declaring the repository's artifact paths inside `folder`, or the
    given `paths` instead; returns its path."""
    declared = yaml.safe_load((REPO / "dvc.yaml").read_text())["vars"][0]["paths"]
    declared |= {name: str(path) for name, path in paths.items()}
    target = folder / "dvc.yaml"
    target.write_text(yaml.safe_dump({"vars": [{"paths": declared}]}))
    return target


@pytest.fixture(autouse=True)
def hermetic(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if _from_the_ci(name)]:
        monkeypatch.delenv(name)


POSITIVE = ["great taste, would buy again", "wonderful and fresh", "love this snack"]
NEGATIVE = ["stale and bland", "arrived broken, awful", "too salty, never again"]


def text_frame(rows_per_class: int = 20) -> pd.DataFrame:
    """A tiny, separable text dataset with distinct rows."""
    reviews, labels = [], []
    for i in range(rows_per_class):
        reviews.append(f"{POSITIVE[i % 3]} item {i}")
        labels.append("great")
        reviews.append(f"{NEGATIVE[i % 3]} item {i}")
        labels.append("other")
    return pd.DataFrame({"review": reviews, "score": labels})


def raw_params(**sections: Any) -> dict[str, Any]:
    """A valid text-task params mapping; keyword sections are merged over the defaults."""
    base: dict[str, Any] = {
        "name": "reviews",
        "data": {
            "source": "train.csv",
            "test_source": "test.csv",
            "text_columns": ["review"],
            "target": "score",
            "positive_label": "great",
        },
        "validate": {
            "labels": ["great", "other"],
            "min_rows_per_class": 2,
            "min_test_rows": 30,  # the floor
            "min_test_rows_per_class": 5,
        },
        "train": {
            "model": {"kind": "logistic_regression", "C": 5.0},
            "text": {"min_df": 1, "ngram_range": [1, 1]},
        },
        "gate": {"min_accuracy": 0.8, "min_macro_f1": 0.8},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values} if isinstance(values, dict) else values
    return base


def make_params(**sections: dict[str, Any]) -> Params:
    return parse_params(raw_params(**sections), Path("params.yaml"))


@pytest.fixture
def params() -> Params:
    return make_params()


# --- a throw-away project: data files, params, dvc.yaml paths and a sqlite MLflow store,
# with the DVC stages run in process (no `dvc repro`) ---------------------------------------


@dataclass
class Project:
    root: Path
    paths: PipelinePaths
    dvc_file: Path
    params_file: Path
    settings: Settings

    def params(self, **sections: dict[str, Any]) -> Params:
        return parse_params(raw_params(**sections), self.params_file)

    def stage_inputs(self, params: Params | None = None) -> StageProject:
        """What the stages after the pipeline read, with these params (default: the base)."""
        chosen = params if params is not None else self.params()
        return StageProject(chosen, self.settings, self.paths, self.params_file, self.dvc_file)

    def run_pipeline(self, params: Params, train_rows: Any = None, test_rows: Any = None) -> None:
        """ingest -> validate -> train -> evaluate, as `dvc repro` would run them."""
        train = self.root / "train.csv"
        (train_rows if train_rows is not None else text_frame(20)).to_csv(train, index=False)
        if test_rows is not None:
            test_rows.to_csv(self.root / "test.csv", index=False)
        params = params.model_copy(
            update={
                "data": params.data.model_copy(
                    update={"source": str(train), "test_source": str(self.root / "test.csv")}
                )
            }
        )
        p = self.paths
        pipeline.ingest(params, p.train, p.test, p.ingest_report)
        assert pipeline.validate(params, p.train, p.test, p.contract_json, p.contract_md).passed
        pipeline.train(params, self.settings, p.train, p.model_dir)
        files = pipeline.EvaluationFiles.of(p)
        pipeline.evaluate(params, self.settings, p.model_dir, p.test, files)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.chdir(tmp_path)  # MLflow's local artifact folder is relative to the project
    text_frame(15).assign(review=lambda f: f.review + " later").to_csv(
        tmp_path / "test.csv", index=False
    )
    dvc_file = write_dvc_file(tmp_path)
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    params_file = tmp_path / "params.yaml"
    params_file.write_text("{}\n")
    settings = Settings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", model_name="reviews")  # type: ignore[call-arg]
    return Project(tmp_path, PipelinePaths.read(dvc_file), dvc_file, params_file, settings)
