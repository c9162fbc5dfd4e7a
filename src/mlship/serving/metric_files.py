"""The files several server processes share their metrics through, made safe on a full disk.

prometheus-client keeps each process's values in a memory-mapped file that it makes sparse
(truncate) and grows by doubling. On a full filesystem — the pod's memory-backed /tmp,
filled by anything — the first write to a page no block was ever given to kills the process
with SIGBUS, and a replacement worker dies the same way. Here every page is given its block
before it is mapped (posix_fallocate), so a full disk is an error at that moment, not a
signal later; and that error is answered by keeping the file's new series in this process's
memory, unexported, with one warning in the log: the server goes on answering, only
/metrics misses what it had no room to write.
"""

from __future__ import annotations

import logging
import mmap
import os
from pathlib import Path
from typing import Any

from prometheus_client import mmap_dict, values

log = logging.getLogger("mlship.serve")
RESERVED_BYTES = 64 * 1024  # a new file's first reservation; ample for the server's series


class ReservedMmapedDict(mmap_dict.MmapedDict):
    """MmapedDict whose pages are reserved before they are mapped (see the module)."""

    def __init__(self, filename: str, read_mode: bool = False) -> None:
        if read_mode:  # the collector reading a file: nothing is written
            super().__init__(filename, read_mode)
            return
        self._f: Any = Path(filename).open("a+b")  # noqa: SIM115 (kept open, as the base)
        self._fname = filename
        self._capacity = os.fstat(self._f.fileno()).st_size or RESERVED_BYTES
        self._m = self._mapped(self._capacity)
        self._positions: dict[str, int] = {}
        self._used = mmap_dict._unpack_integer(self._m, 0)[0]
        if self._used == 0:
            self._used = 8
            mmap_dict._pack_integer(self._m, 0, self._used)
        else:
            for key, _, _, position in self._read_all_values():
                self._positions[key] = position

    def _mapped(self, capacity: int) -> mmap.mmap:
        """The file mapped at `capacity`, every page reserved; on a full disk, an anonymous
        mapping holding what the file held (its new series unexported from then on)."""
        if self._f is not None:
            try:
                os.posix_fallocate(self._f.fileno(), 0, capacity)
                return mmap.mmap(self._f.fileno(), capacity)
            except OSError as error:
                log.warning(
                    "no room for the metrics file %s (%s): its new series are kept in this "
                    "process and not exported",
                    self._fname,
                    error.strerror,
                )
                self._f.close()
                self._f = None
        memory = mmap.mmap(-1, capacity)
        old = getattr(self, "_m", None)
        if old is not None:
            memory[: len(old)] = old[:]
        return memory

    def _init_value(self, key: str) -> None:
        encoded = key.encode("utf-8")
        padded = encoded + (b" " * (8 - (len(encoded) + 4) % 8))
        size = 4 + len(padded) + 16
        if self._used + size > self._capacity:
            capacity = self._capacity
            while self._used + size > capacity:
                capacity *= 2
            self._m = self._mapped(capacity)
            self._capacity = capacity
        super()._init_value(key)

    def close(self) -> None:
        """As the base's close, also when the mapping is in memory (no file left open)."""
        if self._f is not None:
            super().close()
        elif getattr(self, "_m", None) is not None:
            self._m.close()


def reserve_metric_files() -> None:
    """Make prometheus-client's multiprocess values use ReservedMmapedDict (before any
    metric is created)."""
    setattr(values, "MmapedDict", ReservedMmapedDict)  # noqa: B010 (not an exported name)
