"""The pinned locks (uv's hash-checked requirements files) and what a model needs beyond
the server's: a model that holds LightGBM types gets LightGBM in its image, pinned to the
version that trained it, with the hashes of requirements.lock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from mlship.card import ModelCard
from mlship.errors import InputError

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


@dataclass(frozen=True)
class Pin:
    name: str  # canonical
    version: str
    text: str  # the whole entry: the pin and its --hash lines


def read_lock(path: Path) -> dict[str, Pin]:
    """Each `name==version` entry with its continuation lines, by canonical name."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise InputError(f"{path}: cannot read the lock: {error}") from error
    pins: dict[str, Pin] = {}
    entry: list[str] = []
    for line in [*lines, ""]:
        if entry and (line.startswith("    --hash") or entry[-1].endswith("\\")):
            entry.append(line)
            continue
        if entry:
            found = PIN.match(entry[0])
            assert found is not None
            name = canonicalize_name(found.group(1))
            pins[name] = Pin(name, found.group(2), "\n".join(entry).rstrip("\\ ") + "\n")
            entry = []
        if PIN.match(line):
            entry = [line]
    return pins


def _dependencies(name: str) -> list[str]:
    """What an installed distribution requires, without optional extras."""
    found: list[str] = []
    for raw in metadata.requires(name) or []:
        try:
            requirement = Requirement(raw)
        except InvalidRequirement:
            continue
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            found.append(canonicalize_name(requirement.name))
    return found


def extra_requirements(card: ModelCard, serve_lock: Path, full_lock: Path) -> list[Pin]:
    """The pins (with hashes) the model needs beyond the server's lock, with their own
    dependencies; InputError when the full lock lacks one or pins another version than
    the one that trained the model."""
    served = read_lock(serve_lock)
    pinned = read_lock(full_lock)
    trained: dict[str, str] = {
        canonicalize_name(name): version for name, version in card.requirements.items()
    }
    wanted: list[str] = [name for name in trained if name not in served]
    needed: dict[str, Pin] = {}
    while wanted:
        name = wanted.pop()
        if name in needed or name in served:
            continue
        pin = pinned.get(name)
        if pin is None:
            raise InputError(
                f"the model needs {name}, which {full_lock} does not pin: add it to the "
                "`models` extra in pyproject.toml and run `make lock`"
            )
        if name in trained and trained[name] != pin.version:
            raise InputError(
                f"the model was trained with {name} {trained[name]}, but {full_lock} pins "
                f"{pin.version}: retrain with the locked version (`make install`, `make train`)"
            )
        needed[name] = pin
        try:
            wanted += _dependencies(name)
        except metadata.PackageNotFoundError:
            continue
    return sorted(needed.values(), key=lambda pin: pin.name)
