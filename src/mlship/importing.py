"""Objects named in params.yaml by import path: an estimator class, the team's factory.

The team's own code lives in the repository (say a top-level `model/` package), so the
project folder is put on the import path first, as `python -m` would.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any


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
        name for name in packages
        if not any(package_path(name, root).resolve().is_relative_to(t) for t in tracked)
    )  # fmt: skip
