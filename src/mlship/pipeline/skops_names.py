"""skops' lists of the types it trusts by default, computed once per set of library
versions instead of at every import.

Importing skops.io builds those lists in skops.io._trusted_types, and building the list of
scikit-learn estimators imports every scikit-learn module (`all_estimators()`): most of a
server's start-up, for a model that uses a handful of them. The lists depend only on the
versions of skops, scikit-learn, NumPy and SciPy, so they are written once (`save_names`:
at the image build, or by the first process that loads a model) to a file keyed by those
versions, and `import_skops` puts them in place of the module before skops imports it.
Same lists, same trust decisions: tests/unit/pipeline/test_skops_names.py compares them
with skops' own. A file that does not match the installed versions is never read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from importlib import metadata
from pathlib import Path
from typing import Any

MODULE = "skops.io._trusted_types"
LIBRARIES = ("skops", "scikit-learn", "numpy", "scipy")
# what the stand-in module must hold, the lists skops' loaders import from it
COMPUTE = f"""
import json, {MODULE} as names
print(json.dumps({{k: v for k, v in vars(names).items() if k.isupper() and isinstance(v, list)
                  and all(isinstance(x, str) for x in v)}}))
"""


def names_file(folder: Path | None = None) -> Path:
    versions = "-".join(f"{name}{metadata.version(name)}" for name in LIBRARIES)
    base = folder or Path(
        os.environ.get("MLSHIP_SKOPS_NAMES_DIR", Path(sys.prefix) / "share" / "mlship")
    )
    return base / f"skops-trusted-{versions}.json"


def compute_names() -> dict[str, list[str]]:
    """skops' own lists, from skops itself, in a fresh interpreter (this one keeps its
    imports light)."""
    done = subprocess.run([sys.executable, "-c", COMPUTE], capture_output=True, text=True,
                          check=True)  # fmt: skip
    names: dict[str, list[str]] = json.loads(done.stdout)
    return names


def save_names(folder: Path | None = None) -> Path:
    path = names_file(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(compute_names()))
    temporary.replace(path)
    return path


def _stand_in(names: dict[str, Any]) -> types.ModuleType:
    module = types.ModuleType(MODULE, "skops' trusted-type lists, read from mlship's file")
    module.__dict__.update(names)
    return module


def import_skops() -> types.ModuleType:
    """skops.io, with the trusted-type lists read from their file when it exists for these
    versions (written here, once, when it does not and the folder is writable)."""
    if "skops.io" not in sys.modules and MODULE not in sys.modules:
        path = names_file()
        if not path.is_file():
            try:
                save_names()
            except (OSError, subprocess.CalledProcessError):
                path = Path()  # a read-only install: skops builds the lists itself
        if path.is_file():
            sys.modules[MODULE] = _stand_in(json.loads(path.read_text()))
    import skops.io

    loaded: types.ModuleType = skops.io
    return loaded
