"""Reading tables and writing outputs atomically, so a failed stage leaves no half file."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from mlship.errors import InputError


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; it replaces `target` only on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    temp = Path(temp_name)
    try:
        yield temp
        temp.chmod(0o644)  # mkstemp makes 0600; outputs are read by others (a server user)
        temp.replace(target)
    finally:
        temp.unlink(missing_ok=True)


@contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield an empty folder beside `target`; it takes `target`'s place only on success, so
    a failure leaves the previous folder whole."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    previous = target.with_name(f"{staging.name}.previous")
    try:
        yield staging
        staging.chmod(0o755)  # mkdtemp makes 0700; outputs are read by others (a server user)
        if target.exists():
            target.rename(previous)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(previous, ignore_errors=True)


def write_text(target: Path, text: str) -> None:
    with atomic_path(target) as temp:
        temp.write_text(text, encoding="utf-8")


def write_bytes(target: Path, content: bytes) -> None:
    with atomic_path(target) as temp:
        temp.write_bytes(content)


def write_json(target: Path, payload: Any) -> None:
    write_text(target, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def write_with(target: Path, writer: Callable[[Path], None]) -> None:
    """Let `writer` fill a temporary file, then move it into place."""
    with atomic_path(target) as temp:
        writer(temp)


def write_parquet(target: Path, frame: pd.DataFrame) -> None:
    write_with(target, lambda temp: frame.to_parquet(temp, index=False))


def tree_sha256(folder: Path) -> str:
    """A digest of a folder's files, their relative paths and contents; a symbolic link is
    refused (it could point anywhere, and change after the digest was taken)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            raise InputError(f"{path}: a symbolic link; refusing to trust it")
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def sha256(path: Path) -> str:
    import hashlib

    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError as error:
        raise InputError(f"{path}: not found") from error


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise InputError(f"{path}: not found; run the stage that writes it first") from error
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from error


def _read_jsonl(location: str) -> pd.DataFrame:
    return pd.read_json(location, lines=True, dtype=False)


def read_table(location: str) -> pd.DataFrame:
    """Read a .csv or .parquet table from a local path or any fsspec URL."""
    lowered = location.lower()
    if lowered.endswith(".parquet") or lowered.endswith(".pq"):
        reader: Callable[[str], pd.DataFrame] = pd.read_parquet
    elif lowered.endswith(".csv") or lowered.endswith(".csv.gz"):
        reader = pd.read_csv
    elif lowered.endswith(".jsonl") or lowered.endswith(".jsonl.gz"):  # the server's samples
        reader = _read_jsonl
    else:
        raise InputError(
            f"{location}: unsupported file type; use .csv, .csv.gz, .parquet or .jsonl"
        )
    try:
        frame = reader(location)
    except FileNotFoundError as error:
        raise InputError(f"{location}: file not found") from error
    except PermissionError as error:
        raise InputError(f"{location}: permission denied") from error
    except IsADirectoryError as error:
        raise InputError(f"{location}: is a directory, expected a file") from error
    except pd.errors.EmptyDataError as error:
        raise InputError(f"{location}: file is empty") from error
    except ImportError as error:
        raise InputError(f"{location}: reading it needs an extra package: {error}") from error
    except (EOFError, zlib.error) as error:  # a compressed file cut short or damaged
        raise InputError(f"{location}: the file is truncated or damaged: {error}") from error
    except (ValueError, OSError, pd.errors.ParserError) as error:
        # pyarrow's ArrowInvalid is a ValueError; a garbled CSV is a ParserError.
        raise InputError(f"{location}: cannot read it as a table: {error}") from error
    if frame.empty:
        raise InputError(f"{location}: the table has no rows")
    return frame
