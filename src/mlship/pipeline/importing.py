"""Objects named in params.yaml by import path: an estimator class, the team's factory.

The team's own code lives in the repository (say a top-level `model/` package), so the
project folder is put on the import path first, as `python -m` would.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from mlship.config.params import CustomModelParams, EstimatorParams, Params, Task
from mlship.errors import InputError


def project_on_path(root: Path | None = None) -> None:
    folder = str((root or Path.cwd()).resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)


def import_object(path: str) -> Any:
    """`package.module.Name` or `package.module:name`; ImportError/AttributeError say why."""
    module_name, sep, attribute = path.partition(":")
    if not sep:
        module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise ImportError(f"{path!r} is not an import path like package.module.Name")
    project_on_path()
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attribute)
    except AttributeError as error:
        raise AttributeError(f"module {module_name!r} has no attribute {attribute!r}") from error


def local_package(module: ModuleType, root: Path | None = None) -> str | None:
    """The top-level package (or module) name when `module` is the project's own code, i.e.
    a file under the project folder that is not an installed distribution."""
    file = getattr(module, "__file__", None)
    if file is None:
        return None
    here = (root or Path.cwd()).resolve()
    path = Path(file).resolve()
    if not path.is_relative_to(here) or "site-packages" in path.parts:
        return None
    return module.__name__.split(".")[0]


def package_path(name: str, root: Path | None = None) -> Path:
    """Where the project's own top-level package (a folder) or module (a .py file) lives."""
    folder = (root or Path.cwd()) / name
    return folder if folder.is_dir() else folder.with_suffix(".py")


def project_packages(paths: Iterable[str], root: Path | None = None) -> set[str]:
    """The project's own top-level packages among the modules of these import paths (a
    factory `pkg.mod:build`, a class `pkg.mod.Name`); installed ones are not the project's."""
    found: set[str] = set()
    for path in paths:
        module_name = path.partition(":")[0] if ":" in path else path.rpartition(".")[0]
        top = module_name.split(".")[0]
        if top and package_path(top, root).exists():
            module = sys.modules.get(top)
            if module is None or local_package(module, root) is not None:
                found.add(top)
    return found


def untracked_code(packages: Iterable[str], dependencies: Iterable[str], root: Path) -> list[str]:
    """The packages whose files lie outside every dependency path (relative to `root`): a
    change to them would not make DVC retrain."""
    tracked = [(root / dependency).resolve() for dependency in dependencies]
    return sorted(
        name
        for name in packages
        if not any(package_path(name, root).resolve().is_relative_to(t) for t in tracked)
    )


def estimator_class(model: EstimatorParams) -> type[Any]:
    found: type[Any] = import_object(model.class_)
    return found


def check_imports(params: Params, source: Path) -> None:
    """What params.yaml names by import path is there and fits: the estimator class imports,
    is scikit-learn-compatible, takes every key in its params and is a classifier or a
    regressor as data.task says; the factory imports and is a function. InputError names
    the key. (Parsing params.yaml runs no code; this does.)"""
    model, task = params.train.model, params.data.task
    try:
        if isinstance(model, EstimatorParams):
            _check_estimator(model, task)
        elif isinstance(model, CustomModelParams):
            _check_factory(model.factory)
    except ValueError as error:
        raise InputError(f"{source}: invalid parameters\n  train.model: {error}") from error


def _check_estimator(model: EstimatorParams, task: Task) -> None:
    from sklearn.base import is_classifier, is_regressor

    try:
        found = estimator_class(model)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"class {model.class_!r} does not import: {error}") from error
    if not isinstance(found, type) or not all(
        hasattr(found, name) for name in ("fit", "predict", "get_params")
    ):
        raise ValueError(
            f"class {model.class_!r} is not a scikit-learn-compatible estimator "
            "(it needs fit, predict and get_params)"
        )
    accepted = sorted(found().get_params(deep=False))
    signature = inspect.signature(found)
    # a constructor that takes **kwargs (LightGBM's, say) passes unknown keys on itself
    open_ended = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    for key in model.params:
        if key not in accepted and not open_ended:
            raise ValueError(
                f"params.{key}: not a parameter of {found.__name__}; it takes {accepted}"
            )
    wanted = is_classifier if task == "classification" else is_regressor
    if not wanted(found(**model.params)):
        other = "regression" if task == "classification" else "classification"
        kind = "classifier" if task == "classification" else "regressor"
        raise ValueError(
            f"class {model.class_!r} is not a {kind}, but data.task is {task}; choose "
            f"another class or set data.task: {other}"
        )


def _check_factory(factory: str) -> None:
    try:
        found = import_object(factory)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"{factory!r} does not import: {error}") from error
    if not callable(found):
        raise ValueError(f"{factory!r} is not a function")
