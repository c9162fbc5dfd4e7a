"""A registry version that ships the team's code is imported only where the deployment opts
in, and only as the gate judged it; a version's MLmodel cannot point the loader outside its
own files. Each attack here ran code or loaded a foreign file on the code before."""

from __future__ import annotations

import json
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import mlflow
import mlflow.sklearn
import pandas as pd
import pytest
import yaml

from mlship import files
from mlship.config.settings import Settings
from mlship.errors import InputError
from mlship.pipeline.artifacts import TRUSTED_TYPES, save_model
from mlship.pipeline.train import fit
from mlship.registry import runs
from mlship.registry.loading import load_version
from tests.conftest import make_params, text_frame
from tests.serving.conftest import card_for

# the team's package: importing it leaves a mark, as an attacker's payload would run
PACKAGE = """
import os
from pathlib import Path

from sklearn.base import BaseEstimator, ClassifierMixin

Path(os.environ["IMPORT_MARK"]).write_text("imported")


class Evil(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        self.classes_ = sorted(set(y))
        return self

    def predict(self, X):
        return [self.classes_[0]] * len(X)
"""


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = f"sqlite:///{root}/mlflow.db"
        self.settings = Settings(tracking_uri=self.uri, model_name="reviews")  # type: ignore[call-arg]
        self.mark = root / "imported"

    def register(self, code: bool) -> tuple[str, str]:
        """A version with the team's package (or a plain scikit-learn one): (version, run)."""
        mlflow.set_tracking_uri(self.uri)
        card = card_for(["great", "other"])
        frame = text_frame(10)
        if code:
            source = self.root / "src" / "evilpkg"
            source.mkdir(parents=True, exist_ok=True)
            (source / "__init__.py").write_text(textwrap.dedent(PACKAGE))
            sys.path.insert(0, str(source.parent))
            try:
                import evilpkg  # type: ignore[import-not-found]

                model = evilpkg.Evil().fit(frame[["review"]], frame["score"])
                card = card.updated(trusted_types=("evilpkg.Evil",), code=("evilpkg",))
                logged = self._log(model, card, [str(source)])
            finally:  # the server process imports it afresh, from the download
                sys.path.remove(str(source.parent))
                sys.modules.pop("evilpkg", None)
                self.mark.unlink(missing_ok=True)
        else:
            logged = self._log(fit(make_params(), frame), card, None)
        version = str(mlflow.register_model(logged[1], "reviews").version)
        return version, logged[0]

    def _log(self, model: object, card: object, code: list[str] | None) -> tuple[str, str]:
        with mlflow.start_run() as run:
            mlflow.log_dict(card.as_json(), "model_card.json")  # type: ignore[attr-defined]
            logged = mlflow.sklearn.log_model(
                model,
                name="model",
                serialization_format="skops",
                skops_trusted_types=[*TRUSTED_TYPES, *card.trusted_types],  # type: ignore[attr-defined]
                code_paths=code,
                pip_requirements=["scikit-learn"],
            )
        return str(run.info.run_id), str(logged.model_uri)

    def gate(self, version: str, run_id: str, code_sha256: str | None, passed: bool = True) -> None:
        """A gate record on the run, and the version registered with it."""
        report = self.root / f"gate-{len(list(self.root.glob('gate-*')))}.json"
        report.write_text(
            json.dumps(
                {
                    "passed": passed,
                    "candidate_run_id": run_id,
                    "criteria": [{"name": "accuracy >= 0.8", "passed": passed}],
                    "code_sha256": code_sha256,
                    "trusted_types": ["evilpkg.Evil"],
                }
            )
        )
        digest = runs.record_gate(self.settings, run_id, report, [], passed)
        mlflow.MlflowClient(self.uri).set_model_version_tag(
            "reviews", version, runs.GATE_DIGEST_TAG, digest
        )


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IMPORT_MARK", str(tmp_path / "imported"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # where the downloads go
    monkeypatch.setattr(tempfile, "tempdir", None)
    (tmp_path / "tmp").mkdir()
    yield Store(tmp_path)
    sys.modules.pop("evilpkg", None)
    sys.path[:] = [p for p in sys.path if "mlship-model-" not in p]


def test_team_code_from_the_registry_runs_only_with_consent_and_a_matching_gate_record(
    store: Store,
) -> None:
    version, run_id = store.register(code=True)
    # given no opt-in: refused, and nothing of the package was imported
    with pytest.raises(InputError, match="MLSHIP_TRUST_MODEL_CODE=true"):
        load_version(store.uri, "reviews", version, allow_code=False)
    # given an opt-in but no gate record (registered straight into MLflow)
    with pytest.raises(InputError, match="no passing gate record"):
        load_version(store.uri, "reviews", version, allow_code=True)
    # given a failing verdict: still no passing record
    store.gate(version, run_id, "0" * 64, passed=False)
    with pytest.raises(InputError, match="no passing gate record"):
        load_version(store.uri, "reviews", version, allow_code=True)
    # given a passing record of other code than the version ships
    store.gate(version, run_id, "0" * 64)
    with pytest.raises(InputError, match="not the code the gate judged"):
        load_version(store.uri, "reviews", version, allow_code=True)
    assert not store.mark.exists()
    # given the gate's record of this very code: it loads, and only now the code runs
    shipped = next(store.root.rglob("code/evilpkg")).parent
    store.gate(version, run_id, files.tree_sha256(shipped))
    loaded = load_version(store.uri, "reviews", version, allow_code=True)
    assert store.mark.read_text() == "imported"
    assert loaded.model.predict(pd.DataFrame({"review": ["x"]})) == ["great"]


def test_a_model_file_outside_the_versions_own_folder_is_refused(store: Store) -> None:
    version, _ = store.register(code=False)
    # a valid model file elsewhere on the server's disk: the old loader served it
    outside = store.root / "elsewhere" / "outside.skops"
    outside.parent.mkdir()
    save_model(fit(make_params(), text_frame(10)), card_for(["great", "other"]), outside.parent)
    (outside.parent / "model.skops").rename(outside)
    mlmodel = next(store.root.rglob("MLmodel"))
    spec = yaml.safe_load(mlmodel.read_text())
    depth = len(mlmodel.parent.relative_to(store.root).parts)
    spec["flavors"]["sklearn"]["pickled_model"] = "../" * (depth + 3) + str(outside)[1:]
    mlmodel.write_text(yaml.safe_dump(spec))
    with pytest.raises(InputError, match="not a file inside the version's own artifacts"):
        load_version(store.uri, "reviews", version)
