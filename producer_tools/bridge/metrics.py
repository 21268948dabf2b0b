"""The bridge's Prometheus metrics and the ASGI middleware that records requests.

Requests are labelled by route template (`/genesys/1/cs/services/{service_id}/tasks/start`),
never by raw path, so a scan of random URLs cannot grow the label set (`unmatched` for those).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from observability import tracing
from observability.metrics import SECONDS_BUCKETS, process_registry

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
"""Other method names are labelled `other` (any token is a valid method name on the wire)."""


def route_template(scope: Scope) -> str:
    """The matched route's path template, its router's prefix included when FastAPI says it
    (`/genesys/1/cs/services/{service_id}/tasks/start`), `unmatched` when no route matched."""
    context = (scope.get("fastapi") or {}).get("effective_route_context")
    path = getattr(context, "path", None)  # FastAPI >= 0.120 mounts included routers
    if isinstance(path, str):
        return path
    return str(getattr(scope.get("route"), "path", UNMATCHED))


def _headers(scope: Scope) -> dict[str, str]:
    wanted = {b"traceparent", b"tracestate"}
    return {k.decode(): v.decode("latin-1") for k, v in scope["headers"] if k in wanted}


class BridgeMetrics:
    """Every metric the bridge exports, in `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = process_registry(registry)
        r = self.registry
        self.requests = Counter(
            "ucs_bridge_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "ucs_bridge_request_duration_seconds",
            "From a request's start to its response's start, by route template and method.",
            ["route", "method"],
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self.pending_replies = Gauge(
            "ucs_bridge_pending_replies", "Requests waiting for their reply from Kafka.", registry=r
        )
        self.accepted_without_reply = Counter(
            "ucs_bridge_accepted_without_reply",
            "Requests answered 202 (published, no reply within UCS_BRIDGE_REPLY_TIMEOUT_MS).",
            registry=r,
        )
        self.refused = Counter(
            "ucs_bridge_refused",
            "Connections the bridge's bounds refused, by reason: busy (503, pending-request cap), "
            "connections (closed, connection cap), header_timeout / body_timeout (408), "
            "url_too_long (414), too_many_headers / headers_too_large (431).",
            ["reason"],
            registry=r,
        )
        self.kafka_link_up = Gauge(
            "ucs_bridge_kafka_link_up",
            "1 while the bridge's Kafka link is ready, else 0.",
            registry=r,
        )


class RequestMetrics:
    """ASGI middleware: counts and times every HTTP request by route template and status.

    The labelled series are looked up once per label set and kept (prometheus_client's
    `labels()` takes a lock and builds a key on every call); the label sets are bounded: route
    templates, `METHODS` and the status codes the app answers with.
    """

    def __init__(self, app: ASGIApp, metrics: BridgeMetrics) -> None:
        self._app = app
        self._metrics = metrics
        self._durations: dict[tuple[str, str], Any] = {}
        self._counts: dict[tuple[str, str, int], Any] = {}

    def _observe(self, route: str, method: str, seconds: float) -> None:
        series = self._durations.get((route, method))
        if series is None:
            series = self._durations[route, method] = self._metrics.request_duration.labels(
                route, method
            )
        series.observe(seconds)

    def _count(self, route: str, method: str, status: int) -> None:
        series = self._counts.get((route, method, status))
        if series is None:
            series = self._counts[route, method, status] = self._metrics.requests.labels(
                route, method, str(status)
            )
        series.inc()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        method = scope["method"] if scope["method"] in METHODS else "other"

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                self._observe(route_template(scope), method, time.perf_counter() - started)
            await send(message)

        try:
            if tracing.enabled():
                parent = tracing.trace_context(_headers(scope))
                name = f"HTTP {method}"
                attributes = {"url.path": scope["path"]}
                with tracing.span(name, kind="server", parent=parent, attributes=attributes):
                    await self._app(scope, receive, record)
            else:
                await self._app(scope, receive, record)
        finally:
            self._count(route_template(scope), method, status)
