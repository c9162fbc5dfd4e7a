"""The bandit between champion and challenger: Thompson sampling on live feedback.

Each version's chance of success has a Beta(1 + successes, 1 + failures) posterior: for a
classifier a success is a correct label; for a regressor, an error within
`bandit_tolerance`. Thompson sampling sends a request to the version whose posterior draw
is higher, that is, to the challenger with probability P(challenger > champion). That
probability is estimated from the posteriors each time the feedback is read (every
monitor interval) and clamped so each version keeps at least `bandit_floor` of the traffic
and the challenger gets at most `bandit_cap`; requests are then routed by it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlship.serving.feedback import Quality

DRAWS = 20_000  # the estimate of P(challenger > champion) is within about 0.01


@dataclass(frozen=True)
class Posterior:
    successes: int = 0
    failures: int = 0

    @property
    def alpha(self) -> float:
        return 1.0 + self.successes

    @property
    def beta(self) -> float:
        return 1.0 + self.failures

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @classmethod
    def of(cls, quality: Quality | None) -> Posterior:
        return cls() if quality is None else cls(quality.successes, quality.failures)


@dataclass
class Bandit:
    floor: float
    cap: float
    seed: int | None = None
    champion: Posterior = field(default_factory=Posterior)
    challenger: Posterior = field(default_factory=Posterior)
    share: float = field(init=False)  # of requests the challenger answers

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.share = self._clamp(0.5)

    def _clamp(self, share: float) -> float:
        return float(min(max(share, self.floor), self.cap, 1.0 - self.floor))

    def update(self, champion: Quality | None, challenger: Quality | None) -> float:
        self.champion, self.challenger = Posterior.of(champion), Posterior.of(challenger)
        first = self.rng.beta(self.champion.alpha, self.champion.beta, DRAWS)
        second = self.rng.beta(self.challenger.alpha, self.challenger.beta, DRAWS)
        self.share = self._clamp(float(np.mean(second > first)))
        return self.share

    def describe(self) -> dict[str, Any]:
        return {
            "challenger_share": round(self.share, 4),
            "floor": self.floor,
            "cap": self.cap,
            "posteriors": {
                role: {"alpha": p.alpha, "beta": p.beta, "mean": round(p.mean, 4)}
                for role, p in (("champion", self.champion), ("challenger", self.challenger))
            },
        }
