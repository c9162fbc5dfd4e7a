"""What a server is started with beyond its settings: a challenger to serve beside the
champion, and the sibling processes sharing its port. A module of its own, light to import:
the runner reads it before Prometheus' multiprocess directory is set and anything imports
Prometheus."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mlship.choices import ChallengerMode


@dataclass(frozen=True)
class Siblings:
    """The other server processes on the same port. The kernel hands a connection to any of
    them, so /ready answers 200 only once every one has its model: a readiness probe that
    reached a loaded process must not send traffic to one still loading."""

    folder: Path  # one file per process whose champion is loaded
    count: int

    def mark_ready(self) -> None:
        (self.folder / str(os.getpid())).touch()

    def ready(self) -> int:
        return sum(1 for _ in self.folder.iterdir())

    def forget(self, pid: int) -> None:
        """A process that exited no longer counts (its replacement marks itself)."""
        (self.folder / str(pid)).unlink(missing_ok=True)


@dataclass(frozen=True)
class Challenger:
    source: str
    mode: ChallengerMode
    weight: float = 0.1  # share of traffic in split mode
