"""Scratch projects for the framework suite: mlship's own files with one of its examples.

The framework suite never reads the repository's own params.yaml or model code, which are
the team's: a team that changes them keeps this suite green. A scratch project is dvc.yaml
and the files its stages depend on (mlship's source, and whatever a team added to the
dependencies), then the example's folder copied over it: its params.yaml and, for
examples/custom, its model/ code.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from tests.conftest import REPO

EXAMPLES = REPO / "examples"
DEFAULT_EXAMPLE = "reviews"  # the project the repository ships with
IGNORED = shutil.ignore_patterns("__pycache__", "*.egg-info")


def example(name: str) -> Path:
    folder = EXAMPLES / name
    assert (folder / "params.yaml").is_file(), f"no example {name!r} under {EXAMPLES}"
    return folder


def stage_dependencies(dvc_file: Path = REPO / "dvc.yaml") -> list[str]:
    """The paths dvc.yaml's stages depend on that no stage writes: code and settings."""
    document = yaml.safe_load(dvc_file.read_text())
    declared = {f"${{paths.{key}}}" for key in document["vars"][0]["paths"]}
    found: list[str] = []
    for stage in document["stages"].values():
        for dependency in stage.get("deps", []):
            if dependency not in declared and dependency not in found:
                found.append(dependency)
    return found


def copy_path(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, destination, ignore=IGNORED, dirs_exist_ok=True)
    else:
        shutil.copy2(source, destination)


def use_example(root: Path, name: str) -> None:
    """Copy the example's files (params.yaml, its code) over the project in `root`."""
    copy_path(example(name), root)
    package = root / "model" / "__init__.py"
    if not package.is_file():  # dvc.yaml's train stage depends on model/
        package.parent.mkdir(exist_ok=True)
        package.write_text('"""The team\'s own model code."""\n')


def scratch_project(root: Path, name: str = DEFAULT_EXAMPLE, *files: str) -> Path:
    """A project in `root` (created): dvc.yaml, .dvcignore, the top-level `files`, what the
    stages depend on, mlship's source, and the example `name`. Returns `root`."""
    root.mkdir(parents=True, exist_ok=True)
    for file in ("dvc.yaml", ".dvcignore", *files):
        copy_path(REPO / file, root / file)
    for dependency in ["src", *stage_dependencies()]:
        if (REPO / dependency).exists():
            copy_path(REPO / dependency, root / dependency)
    use_example(root, name)
    return root
