"""The server's sink: what it samples for offline analysis and `mlship monitor`.

A folder (a local path or an fsspec URL) of JSONL part files: `inputs-*.jsonl`, one line
per sampled row (its feature columns, and the columns below), and `feedback-*.jsonl`, one
line per row whose true label or value came back through POST /feedback. Kept apart from
the monitoring stages so the serving image needs nothing beyond the server's libraries.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlship import files
from mlship.errors import InputError

# the columns the server's sink adds beside the feature columns
ANSWER, LABEL, VERSION, REQUEST_ID, AT = "_answer", "_label", "_version", "_request_id", "_at"
INPUTS_PREFIX, FEEDBACK_PREFIX = "inputs-", "feedback-"


def read_rows(location: str, prefix: str = "") -> pd.DataFrame:
    """A table file, or a folder (local or fsspec URL) of the sink's JSONL part files whose
    names start with `prefix`."""
    import fsspec

    filesystem, root = fsspec.core.url_to_fs(location)
    if not filesystem.isdir(root):
        return files.read_table(location)
    parts = sorted(
        p
        for p in filesystem.ls(root, detail=False)
        if Path(p).name.startswith(prefix) and ".jsonl" in Path(p).name
    )
    if not parts:
        raise InputError(f"{location}: no {prefix}*.jsonl files in this folder")
    protocol = filesystem.protocol if isinstance(filesystem.protocol, str) else None
    named = [p if protocol in (None, "file") else f"{protocol}://{p}" for p in parts]
    return pd.concat([files.read_table(p) for p in named], ignore_index=True)
