"""Pausing Python's cyclic garbage collector while a burst of long-lived objects is made
(a server's imports, a model's load): its full passes over the growing heap cost a fifth
of the imports and 40 % of loading the text model, and free almost nothing."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_collector() -> Iterator[None]:
    """The collector off inside the block, back to what it was after (nesting is fine)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
