import importlib
import importlib.util
import os
import py_compile
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from mlship.card import Features, ModelCard
from mlship.config.params import Params
from mlship.errors import InputError
from mlship.pipeline.artifacts import (
    TRUSTED_TYPES,
    code_on_path,
    load_file,
    load_model,
    save_model,
)
from mlship.pipeline.features import TextVectorizer, feature_frame
from mlship.pipeline.train import fit
from mlship.vcs import git_state
from tests.conftest import text_frame


def shout(values: object) -> object:
    return values


def test_model_round_trips_through_skops(tmp_path: Path, params: Params) -> None:
    frame = text_frame(10)
    pipeline = fit(params, frame)
    card = ModelCard(
        features=Features(text=("review",)), target="score", classes=("great", "other")
    )
    save_model(pipeline, card, tmp_path)
    loaded = load_model(tmp_path)
    features = feature_frame(frame, params.data)
    assert np.array_equal(loaded.predict_proba(features), pipeline.predict_proba(features))
    assert ModelCard.load(tmp_path) == card


def test_types_outside_the_trust_policy_are_refused(tmp_path: Path) -> None:
    # given a model file holding a function from outside scikit-learn/NumPy/SciPy
    sio.dump(Pipeline([("custom", FunctionTransformer(shout))]), tmp_path / "model.skops")
    # when loaded / then it is refused, naming the type
    with pytest.raises(InputError, match=r"outside the trust policy.*shout"):
        load_model(tmp_path)


def test_missing_and_corrupt_model_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no model file"):
        load_model(tmp_path)
    (tmp_path / "model.skops").write_bytes(b"not a zip")
    with pytest.raises(InputError, match=r"model\.skops"):
        load_model(tmp_path)


def test_git_state_outside_a_checkout(tmp_path: Path) -> None:
    assert git_state(tmp_path).sha == "unknown"


def _text_vectorizer(model: Pipeline) -> TextVectorizer:
    vectorizer = model.named_steps["features"].named_transformers_["text_review"]
    assert isinstance(vectorizer, TextVectorizer)
    return vectorizer


def test_the_text_vocabulary_is_saved_as_arrays_and_comes_back_whole(
    tmp_path: Path, params: Params
) -> None:
    # given a text model whose vocabulary holds a term that is not ASCII
    frame = text_frame(10)
    frame.loc[0, "review"] = "crème brûlée, sehr süß"
    pipeline = fit(params, frame)
    card = ModelCard(
        features=Features(text=("review",)), target="score", classes=("great", "other")
    )
    save_model(pipeline, card, tmp_path)
    # when loaded / then the vocabulary is the fitted one and the schema has no node per term
    loaded = load_model(tmp_path)
    assert _text_vectorizer(loaded).vocabulary_ == _text_vectorizer(pipeline).vocabulary_
    assert "brûlée" in _text_vectorizer(loaded).vocabulary_
    with zipfile.ZipFile(tmp_path / "model.skops") as archive:
        schema = archive.read("schema.json").decode()
    assert '"brûlée"' not in schema and "\\u00fb" not in schema
    features = feature_frame(frame, params.data)
    assert np.array_equal(loaded.predict_proba(features), pipeline.predict_proba(features))


@pytest.mark.parametrize(
    ("terms", "ends", "why"),
    [
        (b"goodbad", [4, 9], "do not fit its bytes"),  # past the end
        (b"goodbad", [4, 4, 7], "do not fit its bytes"),  # an empty term
        (b"goodgood", [4, 8], "repeats a term"),
        (b"\xff\xfe", [2], "can't decode"),
        (b"", [], "is empty"),
    ],
)
def test_a_forged_vocabulary_is_refused_not_loaded_wrong(
    tmp_path: Path, params: Params, terms: bytes, ends: list[int], why: str
) -> None:
    # given a saved text model whose vocabulary arrays were replaced
    pipeline = fit(params, text_frame(10))
    vectorizer = _text_vectorizer(pipeline)
    state = vectorizer.__getstate__()
    state["terms_utf8_"] = np.frombuffer(terms, dtype=np.uint8).copy()
    state["term_ends_"] = np.array(ends, dtype=np.int64)
    forged = TextVectorizer.__new__(TextVectorizer)
    forged.__dict__.update(vectorizer.__dict__)
    forged.__getstate__ = lambda: state  # type: ignore[method-assign]
    sio.dump(forged, tmp_path / "vectorizer.skops")
    # when loaded / then the load fails, saying why
    with pytest.raises(InputError, match=why):
        load_file(tmp_path / "vectorizer.skops", TRUSTED_TYPES)


def test_a_models_code_is_imported_from_its_source_never_from_a_planted_pyc(
    tmp_path: Path,
) -> None:
    """Python trusts a .pyc in __pycache__ whose header matches the source's mtime and size:
    one planted beside signed code would run in its place. code/ is imported from source."""
    code = tmp_path / "code" / "plantedpkg"
    code.mkdir(parents=True)
    (code / "__init__.py").write_text("")
    source = code / "rules.py"
    source.write_text("WHO = 'signed!'\n")
    # the attacker's bytecode: other code of the same size, its mtime made the source's
    evil = tmp_path / "evil.py"
    evil.write_text("WHO = 'planted'\n")
    stat = source.stat()
    os.utime(evil, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    planted = Path(importlib.util.cache_from_source(str(source)))
    py_compile.compile(str(evil), cfile=str(planted))
    code_on_path(tmp_path / "code")
    try:
        assert importlib.import_module("plantedpkg.rules").WHO == "signed!"
        assert sorted(planted.parent.iterdir()) == [planted]  # and none written
    finally:
        sys.path.remove(str((tmp_path / "code").resolve()))
        for name in ("plantedpkg.rules", "plantedpkg"):
            sys.modules.pop(name, None)
