"""The train stage and the team's code: every package the model is made from must be a
dependency of the DVC train stage, or a change to it would leave a stale model that still
passes the gate."""

from __future__ import annotations

import sys

import pytest

from mlship.errors import InputError
from mlship.stages import pipeline
from tests.conftest import Project, text_frame

FACTORY = """
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline


def build(params, features):
    words = ColumnTransformer([("words", TfidfVectorizer(), features.text[0])])
    return make_pipeline(words, LogisticRegression(**params))
"""


@pytest.fixture
def gemstones(project: Project, monkeypatch: pytest.MonkeyPatch) -> Project:
    """The team's factory in a package of its own at the project's root (each test's own:
    none imported by an earlier test stays)."""
    for name in [n for n in sys.modules if n.split(".")[0] == "gemstones"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "path", list(sys.path))
    package = project.root / "gemstones"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "pricing.py").write_text(FACTORY)
    text_frame(20).to_csv(project.root / "train.csv", index=False)
    paths = project.paths
    params = project.params(data={"source": "train.csv", "test_source": "test.csv"})
    pipeline.ingest(params, paths.train, paths.test, paths.ingest_report)
    return project


def _custom(project: Project) -> object:
    return project.params(
        train={
            "model": {"kind": "custom", "factory": "gemstones.pricing:build", "params": {"C": 2.0}}
        }
    )


def test_a_factory_outside_the_train_stage_s_dependencies_is_refused(gemstones: Project) -> None:
    params = _custom(gemstones)
    with pytest.raises(InputError) as refused:
        pipeline.train(
            params,
            gemstones.settings,
            gemstones.paths.train,  # type: ignore[arg-type]
            gemstones.paths.model_dir,
            tracked_code=("src/mlship", "model"),
        )
    message = str(refused.value)
    assert "outside the train stage's dependencies in dvc.yaml: gemstones (gemstones)" in message
    assert (
        "Move it under model/" in message and "add 'gemstones' to the train stage's deps" in message
    )
    assert not gemstones.paths.model_dir.exists()  # refused before anything was trained


def test_a_factory_in_a_declared_dependency_trains_and_travels_with_the_model(
    gemstones: Project,
) -> None:
    params = _custom(gemstones)
    paths = gemstones.paths
    card = pipeline.train(
        params,
        gemstones.settings,
        paths.train,  # type: ignore[arg-type]
        paths.model_dir,
        tracked_code=("model", "gemstones"),
    )
    assert card.code == ("gemstones",)
    assert card.name == "reviews"
    assert (gemstones.paths.model_dir / "code" / "gemstones" / "pricing.py").is_file()
