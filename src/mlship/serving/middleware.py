"""The one middleware: request id, JSON access log, bearer auth, per-client rate limits, body
size limit and request metrics, in one pass of pure ASGI (Starlette's BaseHTTPMiddleware
would cost more per call)."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import JSONResponse, Response

from mlship.config.settings import Settings
from mlship.serving import limits, monitor
from mlship.serving.limits import ClientLimits
from mlship.serving.metrics import Metrics

access_log = logging.getLogger("mlship.access")
log = logging.getLogger("mlship.serve")

# probes, metrics and the API description stay open when a token is set (metrics: unless
# MLSHIP_METRICS_TOKEN is set)
OPEN_PATHS = {
    "/health",
    "/ready",
    "/metrics",
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/docs",
    "/openapi.json",
}
V2_MODEL_ROUTE = re.compile(r"^/v2/models/[^/]+(/ready|/infer)?$")


def method_label(method: str) -> str:
    return method if method in METHODS else "OTHER"


def route_label(path: str) -> str:
    """The route a path belongs to, so metrics have bounded labels."""
    if path in OPEN_PATHS or path in ("/", "/predict", "/invocations", "/model", "/feedback"):
        return path
    if V2_MODEL_ROUTE.match(path):
        suffix = path.rsplit("/", 1)[-1]
        return (
            f"/v2/models/{{name}}/{suffix}" if suffix in ("ready", "infer") else "/v2/models/{name}"
        )
    return "other"


class _BodyTooLargeError(Exception):
    pass


class _BodyTooSlowError(Exception):
    pass


def client_address(scope: dict[str, Any]) -> str:
    """The address the request came from (a trusted proxy's X-Forwarded-For, else the
    connection's), as an address: anything else — a forged value a proxy passed on — is
    cut to MAX_CLIENT, so no client can make the server keep or log a large key."""
    address = str((scope.get("client") or ("", 0))[0])
    if len(address) <= MAX_CLIENT:
        return address
    return address[:MAX_CLIENT] + "…"


MAX_CLIENT = 64  # characters: an IPv6 address with a zone fits
# metric labels come from closed sets: a client inventing methods must not add series
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
Endpoint = Callable[..., Awaitable[Response]]


@dataclass(frozen=True)
class Shortcut:
    """A prediction route called straight from here, past the framework's routing layers
    (measured: they were a third of the event loop's time per single-row request)."""

    method: str
    pattern: re.Pattern[str]
    endpoint: Endpoint


class Gatekeeper:
    def __init__(
        self,
        app: Any,
        settings: Settings,
        metrics: Metrics,
        shortcuts: list[Shortcut] | None = None,
    ) -> None:
        self.app = app
        self.tokens = (
            limits.read_tokens(settings.api_tokens_file) if settings.api_tokens_file else {}
        )
        if settings.api_token:
            self.tokens[settings.api_token.get_secret_value().encode()] = "token"
        self.metrics_tokens = dict(self.tokens)  # who may read /metrics when it is guarded
        if settings.metrics_token:
            self.metrics_tokens[settings.metrics_token.get_secret_value().encode()] = "metrics"
        self.guard_metrics = settings.metrics_token is not None
        self.limits = (
            ClientLimits(
                settings.rate_limit_requests,
                settings.rate_limit_rows,
                settings.rate_limit_burst_seconds,
                settings.max_request_rows,
            )
            if settings.rate_limit_requests is not None
            else None
        )
        self.max_body = settings.max_body_bytes
        self.body_timeout = settings.body_timeout_seconds
        self.metrics = metrics
        self.shortcuts = shortcuts if shortcuts is not None else []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        # a server-made id is random: another client cannot guess it to send feedback
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:128] or (
            os.urandom(16).hex()
        )
        monitor.request_id.set(request_id)  # the id the answer is remembered under
        path, method = scope["path"], scope["method"]
        status = 500

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        self.metrics.in_flight.inc()
        client = client_address(scope)
        try:
            refusal, client = self._refuse(path, headers, client)
            monitor.client.set(client)  # whose answer it is, for /feedback
            if self.limits is not None and self.limits.rows is not None:
                limits.take_rows.set(partial(self._take_rows, client))
            if refusal is not None:
                await self._reply(send_with_id, *refusal)
            else:
                await self._dispatch(scope, self._limited(receive), send_with_id)
        except _BodyTooLargeError:
            await self._reply(send_with_id, 413, {"detail": self._too_large_text()})
        except _BodyTooSlowError:
            detail = f"the request body did not arrive within {self.body_timeout:g} s"
            await self._reply(send_with_id, 408, {"detail": detail}, [(b"connection", b"close")])
        finally:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(route_label(path), method_label(method), str(status)).inc()
            if access_log.isEnabledFor(logging.INFO):
                ms = round((time.perf_counter() - started) * 1e3, 2)
                access_log.info(
                    orjson.dumps(
                        {
                            "request_id": request_id,
                            "method": method[:16],
                            "path": path[:256],
                            "status": status,
                            "ms": ms,
                            "client": client,
                        }
                    ).decode()
                )

    async def _dispatch(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        for shortcut in self.shortcuts:
            found = shortcut.pattern.match(scope["path"])
            if found and scope["method"] == shortcut.method:
                try:
                    response = await shortcut.endpoint(
                        request=Request(scope, receive), **found.groupdict()
                    )
                except (_BodyTooLargeError, _BodyTooSlowError):
                    raise
                except Exception:  # what the framework's error middleware would do
                    log.exception("error while serving %s", scope["path"])
                    response = JSONResponse({"detail": "internal server error"}, status_code=500)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _too_large_text(self) -> str:
        return f"request body exceeds the limit of {self.max_body} bytes"

    def _refuse(
        self, path: str, headers: dict[bytes, bytes], address: str
    ) -> tuple[tuple[int, Any, list[Any]] | None, str]:
        """(a refusal, or None to go on; the client: its token's name, or its address)."""
        length = headers.get(b"content-length")
        if (
            length is not None
            and length.isdigit()
            and (len(length) > 12 or int(length) > self.max_body)
        ):
            return (413, {"detail": self._too_large_text()}, []), address
        if path == "/metrics" and self.guard_metrics:
            if self._token_client(headers.get(b"authorization", b""), self.metrics_tokens) is None:
                denied = {"detail": "missing or invalid bearer token (MLSHIP_METRICS_TOKEN)"}
                return (401, denied, [(b"www-authenticate", b"Bearer")]), address
            return None, address
        if path in OPEN_PATHS or path.startswith("/v2/health"):
            return None, address
        client = address
        if self.tokens:
            named = self._token_client(headers.get(b"authorization", b""))
            if named is None:
                denied = {"detail": "missing or invalid bearer token"}
                return (401, denied, [(b"www-authenticate", b"Bearer")]), address
            client = named
        if self.limits is not None:
            decision = self.limits.admit(client, time.monotonic())
            self.metrics.rate_limited.labels(decision.outcome).inc()
            if not decision.allowed:
                kind = "requests" if decision.outcome == "over_requests" else "rows"
                detail = f"over this client's rate of {kind}; retry after the Retry-After seconds"
                wait = [(b"retry-after", limits.retry_after_header(decision.retry_after))]
                return (429, {"detail": detail}, wait), client
        return None, client

    def _take_rows(self, client: str, rows: int) -> limits.Decision:
        assert self.limits is not None
        decision = self.limits.take_rows(client, rows, time.monotonic())
        if not decision.allowed:
            self.metrics.rate_limited.labels(decision.outcome).inc()
        return decision

    def _token_client(self, given: bytes, tokens: dict[bytes, str] | None = None) -> str | None:
        """The client whose token this Authorization header carries; every token is compared
        (in constant time), so the time taken does not tell which one nearly matched."""
        if given[:7].lower() != b"bearer ":
            return None
        offered = given[7:].strip()
        found = None
        for token, name in (self.tokens if tokens is None else tokens).items():
            if hmac.compare_digest(offered, token):
                found = name
        return found

    def _limited(self, receive: Any) -> Callable[[], Awaitable[dict[str, Any]]]:
        """Count body bytes as they arrive (a chunked upload cannot pass the limit either)
        and give the whole body `body_timeout` seconds from the first read."""
        seen = 0
        deadline: float | None = None
        complete = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen, deadline, complete
            if complete:  # the body is in: what follows is a wait for the disconnect
                return await receive()  # type: ignore[no-any-return]
            deadline = deadline or asyncio.get_running_loop().time() + self.body_timeout
            try:
                async with asyncio.timeout_at(deadline):  # lighter than wait_for on 3.11
                    message: dict[str, Any] = await receive()
            except TimeoutError as error:
                raise _BodyTooSlowError from error
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _BodyTooLargeError
                complete = not message.get("more_body", False)
            return message

        return limited_receive

    @staticmethod
    async def _reply(send: Any, status: int, body: Any, extra: list[Any] | None = None) -> None:
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    *(extra or []),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
