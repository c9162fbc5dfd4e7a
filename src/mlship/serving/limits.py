"""Who a client is, and per-client rate limits: a token bucket of requests and one of rows
for each client, so one client can neither starve the others nor copy the model by querying
it at full speed.

A client is the name its bearer token has in MLSHIP_API_TOKENS_FILE, or, without tokens,
its address (a trusted proxy's X-Forwarded-For, else the connection's). A request is
admitted when both buckets hold something; its rows are taken from the row bucket once its
body is read and checked, before it is scored — a request the bucket cannot hold now is
refused — so concurrent requests cannot together score more than the client's rows. Each
server process keeps its own buckets: the runner gives each of N workers 1/N of the rates.
"""

from __future__ import annotations

import collections
import contextvars
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mlship.errors import InputError

# set by the middleware for each request: the data plane takes the rows it is about to score
take_rows: contextvars.ContextVar[Callable[[int], Decision] | None] = contextvars.ContextVar(
    "take_rows", default=None
)
Outcome = Literal["allowed", "over_requests", "over_rows"]
MAX_CLIENTS = 10_000  # buckets kept; the least recently seen client is forgotten first


@dataclass
class Bucket:
    tokens: float
    stamp: float


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    retry_after: float  # seconds until the client may send again; 0 when allowed

    @property
    def allowed(self) -> bool:
        return self.outcome == "allowed"


class Rate:
    """One kind of token (requests or rows): `per_second`, up to `capacity` saved."""

    def __init__(self, per_second: float, capacity: float) -> None:
        self.per_second = per_second
        self.capacity = capacity
        self.buckets: collections.OrderedDict[str, Bucket] = collections.OrderedDict()

    def level(self, client: str, now: float) -> Bucket:
        bucket = self.buckets.get(client)
        if bucket is None:
            bucket = self.buckets[client] = Bucket(self.capacity, now)
            if len(self.buckets) > MAX_CLIENTS:
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(client)
            bucket.tokens = min(
                self.capacity, bucket.tokens + (now - bucket.stamp) * self.per_second
            )
            bucket.stamp = now
        return bucket

    def wait(self, bucket: Bucket, need: float) -> float:
        """Seconds until the bucket holds `need`."""
        return max(0.0, (need - bucket.tokens) / self.per_second)


class ClientLimits:
    def __init__(
        self,
        requests_per_second: float,
        rows_per_second: float | None,
        burst_seconds: float,
        max_request_rows: int,
    ) -> None:
        self.requests = Rate(requests_per_second, max(1.0, requests_per_second * burst_seconds))
        self.rows = (
            None
            if rows_per_second is None
            # a bucket smaller than the largest request would refuse it forever
            else Rate(
                rows_per_second, max(float(max_request_rows), rows_per_second * burst_seconds)
            )
        )

    def admit(self, client: str, now: float) -> Decision:
        """Take one request token, or say how long to wait."""
        requests = self.requests.level(client, now)
        if self.rows is not None:
            rows = self.rows.level(client, now)
            if rows.tokens <= 0:
                return Decision("over_rows", self.rows.wait(rows, 1.0))
        if requests.tokens < 1:
            return Decision("over_requests", self.requests.wait(requests, 1.0))
        requests.tokens -= 1
        return Decision("allowed", 0.0)

    def take_rows(self, client: str, rows: int, now: float) -> Decision:
        """Take `rows` from the client's row bucket, or say how long until it holds them."""
        if self.rows is None or not rows:
            return Decision("allowed", 0.0)
        bucket = self.rows.level(client, now)
        if bucket.tokens < rows:
            return Decision("over_rows", self.rows.wait(bucket, float(rows)))
        bucket.tokens -= rows
        return Decision("allowed", 0.0)


def read_tokens(path: str) -> dict[bytes, str]:
    """`<client name> <token>` per line ('#' starts a comment): token -> client name."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise InputError(f"MLSHIP_API_TOKENS_FILE={path}: cannot read it: {error}") from error
    tokens: dict[bytes, str] = {}
    for number, line in enumerate(lines, 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 2 or len(fields[1]) < 16:
            raise InputError(
                f"{path}:{number}: expected `<client name> <token>`, the token at least 16 "
                "characters"
            )
        if fields[1].encode() in tokens:
            raise InputError(f"{path}:{number}: this token is also another client's")
        tokens[fields[1].encode()] = fields[0]
    if not tokens:
        raise InputError(f"{path}: no `<client name> <token>` line")
    return tokens


def retry_after_header(seconds: float) -> bytes:
    """Retry-After takes whole seconds: at least 1."""
    return str(max(1, math.ceil(seconds))).encode()
