"""Objects named in params.yaml by import path: an estimator class, the team's factory.

The team's own code lives in the repository (say a top-level `model/` package), so the
project folder is put on the import path first, as `python -m` would.
"""

from __future__ import annotations

import importlib
import sys
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
