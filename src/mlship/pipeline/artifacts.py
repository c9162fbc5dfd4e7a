"""The model directory: the fitted model in skops format, its model card, and the team's
code the model needs (under code/).

skops refuses to load any type it does not know to be safe unless it is named. The built-in
kinds need only a short, reviewed list (TRUSTED_TYPES); any other type must be named in
params.yaml's `train.trusted_types`, a reviewed change, and travels with the model in its
card. Anything else is refused, so a tampered file cannot make the loader run arbitrary code.
"""

from __future__ import annotations

import importlib.machinery
import json
import shutil
import sys
import zipfile
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from mlship.card import MODEL_FILE, ModelCard
from mlship.collector import paused_collector
from mlship.errors import InputError
from mlship.files import tree_sha256, write_with
from mlship.pipeline.skops_names import import_skops

TRUSTED_TYPES = (
    "mlship.pipeline.features.TextVectorizer",  # TF-IDF with its vocabulary as arrays
    "mlship.pipeline.labels.EncodedLabels",  # labels around a classifier that wants indices
    "numpy.dtype",  # the one-hot encoder's category dtypes
    "sklearn.calibration._CalibratedClassifier",  # linear_svm's calibrated folds
    "sklearn.calibration._SigmoidCalibration",
    # scikit-learn's trees (gradient_boosting's, and every forest's and tree's): skops notes
    # their node indices are not bounds-checked, so a forged file could crash predict().
    # Model files come only from this pipeline and are content-addressed by DVC and MLflow.
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
)
TRACKED_LIBRARIES = ("mlship", "scikit-learn", "numpy", "scipy", "pandas", "skops", "mlflow")
CODE_DIR = "code"  # the team's packages the model needs, copied beside it


def library_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def untrusted_types(model: Any) -> list[str]:
    """The types in `model` beyond skops' own safe set and the built-in trust list."""
    sio = import_skops()
    found = sio.get_untrusted_types(data=sio.dumps(model))
    return sorted(name for name in found if name not in TRUSTED_TYPES)


def refuse_untrusted(needed: list[str], trusted: tuple[str, ...], where: str) -> None:
    refused = [name for name in needed if name not in trusted]
    if refused:
        listing = "".join(f"\n    - {name}" for name in refused)
        raise InputError(
            f"{where}: the model holds types outside the trust policy: {', '.join(refused)}. "
            f"If you trust that code, list them in params.yaml (a reviewed change):\n"
            f"  train:\n    trusted_types:{listing}"
        )


def copy_code(packages: tuple[str, ...], model_dir: Path, root: Path | None = None) -> None:
    """Copy the team's packages (folders or single modules under `root`) into code/."""
    target = model_dir / CODE_DIR
    shutil.rmtree(target, ignore_errors=True)
    for name in packages:
        source = (root or Path.cwd()) / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(source.with_suffix(".py"), target / f"{name}.py")


def code_digest(model_dir: Path) -> str | None:
    """The digest of the team's code shipped in the model directory; None when it has none."""
    code = model_dir / CODE_DIR
    return tree_sha256(code) if code.is_dir() else None


def save_model(model: Any, card: ModelCard, model_dir: Path) -> None:
    sio = import_skops()
    write_with(
        model_dir / MODEL_FILE,
        lambda temp: sio.dump(model, temp, compression=zipfile.ZIP_DEFLATED),
    )
    copy_code(card.code, model_dir)
    card.save(model_dir)


def load_model(model_dir: Path, card: ModelCard | None = None) -> Any:
    """The model, loaded with the built-in trust list plus the card's reviewed types; the
    team's code under code/ is importable while it loads (and after)."""
    path = model_dir / MODEL_FILE
    if not path.is_file():
        raise InputError(f"{path}: no model file; run `mlship train` first")
    extra = () if card is None else card.trusted_types
    code = model_dir / CODE_DIR
    if code.is_dir():
        code_on_path(code)
    return load_file(path, TRUSTED_TYPES + extra)


class _SourceOnlyLoader(importlib.machinery.SourceFileLoader):
    """Compiles the .py it is given and never reads or writes __pycache__: no stat, no cache
    (importlib's SourceLoader skips bytecode when `path_stats` fails)."""

    def path_stats(self, path: str) -> Mapping[str, Any]:
        raise OSError("the team's code is imported from its source only")


def _source_only_finder(path: str) -> importlib.machinery.FileFinder:
    if not any(Path(path).is_relative_to(code) for code in _CODE_FOLDERS):
        raise ImportError(path)  # the next path hook's
    return importlib.machinery.FileFinder(path, (_SourceOnlyLoader, [".py"]))


_CODE_FOLDERS: list[Path] = []


def code_on_path(code: Path) -> None:
    """A model's code/ importable, from its .py files only: the signature covers those, and
    a .pyc put beside them (Python trusts one whose header matches the source's mtime and
    size) is never read, nor one written."""
    code = code.resolve()
    if code not in _CODE_FOLDERS:
        _CODE_FOLDERS.append(code)
    if _source_only_finder not in sys.path_hooks:
        sys.path_hooks.insert(0, _source_only_finder)
    for cached in [p for p in sys.path_importer_cache if Path(p).is_relative_to(code)]:
        del sys.path_importer_cache[cached]
    if str(code) not in sys.path:
        sys.path.insert(0, str(code))


def load_file(path: Path, trusted: tuple[str, ...]) -> Any:
    """A skops file whose every type is safe to skops or named in `trusted`. One pass: skops
    audits the whole tree before it builds any object (asking for the untrusted types first
    read and audited the file twice, half of a text model's load)."""
    sio = import_skops()
    from skops.io.exceptions import UntrustedTypesFoundException

    try:
        with paused_collector():
            model = sio.load(path, trusted=list(trusted))
    except UntrustedTypesFoundException:
        refused = [name for name in sio.get_untrusted_types(file=path) if name not in trusted]
        raise InputError(
            f"{path}: refusing to load types outside the trust policy: {refused}"
        ) from None
    except (OSError, zipfile.BadZipFile, json.JSONDecodeError) as error:
        raise InputError(f"{path}: not a readable skops file: {error}") from error
    except Exception as error:  # skops raises many kinds on a damaged file
        raise InputError(f"{path}: cannot load the model: {error}") from error
    if not callable(getattr(model, "predict", None)):
        raise InputError(
            f"{path}: expected a fitted model with predict, got {type(model).__name__}"
        )
    return model
