"""A registry version loads only as a skops file under the trust policy: never by
unpickling (a pickle runs any code it names when loaded)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import mlflow.sklearn
import pytest

from mlship.errors import InputError
from mlship.pipeline.artifacts import TRUSTED_TYPES
from mlship.pipeline.train import fit
from mlship.registry.loading import load_version
from tests.conftest import make_params, text_frame
from tests.serving.conftest import card_for


def _register(store: str, serialization: str) -> str:
    mlflow.set_tracking_uri(store)
    model = fit(make_params(), text_frame(10))
    with mlflow.start_run() as run:
        mlflow.log_dict(card_for(["great", "other"]).as_json(), "model_card.json")
        logged = mlflow.sklearn.log_model(
            model,
            name="model",
            serialization_format=serialization,
            pip_requirements=["scikit-learn"],
            # as mlship's own log_training: skops checks the file it writes against them
            skops_trusted_types=list(TRUSTED_TYPES) if serialization == "skops" else None,
        )
    assert run.info.run_id
    return str(mlflow.register_model(logged.model_uri, "reviews").version)


def test_a_pickled_version_is_refused_and_a_skops_one_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # where the downloads go
    monkeypatch.setattr(tempfile, "tempdir", None)
    (tmp_path / "tmp").mkdir()
    store = f"sqlite:///{tmp_path}/mlflow.db"
    pickled = _register(store, "pickle")
    with pytest.raises(InputError, match="refusing a model saved as 'pickle'"):
        load_version(store, "reviews", pickled)
    safe = _register(store, "skops")
    loaded = load_version(store, "reviews", safe)
    assert list(loaded.model.classes_) == ["great", "other"]
    assert loaded.card.classes == ("great", "other")
    # neither download is kept once loaded or refused (no team code to import from it)
    assert not list((tmp_path / "tmp").glob("mlship-model-*"))
