"""The closed sets of choices a flag can take, shared by the CLI and the stages."""

from __future__ import annotations

from enum import Enum, StrEnum


class Environment(StrEnum):
    """Where `mlship deploy` rolls out: the namespace mlship-<env> by default."""

    staging = "staging"
    production = "production"


class LoadTarget(StrEnum):
    """What `mlship loadtest` starts when no --url is given."""

    auto = "auto"  # the built image when an engine can run it, else a local server
    image = "image"
    local = "local"


class ChallengerMode(Enum):  # not a StrEnum: a member named `split` would hide str.split
    """How a second model shares traffic with the champion."""

    shadow = "shadow"  # scores every request in the background; the champion answers
    split = "split"  # answers a share of requests
    bandit = "bandit"  # answers a share that follows the feedback (Thompson sampling)


class ScoringEngine(Enum):
    """Where `mlship score` runs."""

    local = "local"  # this process, chunk by chunk
    spark = "spark"  # Apache Spark: local[*] or a cluster (--master)
