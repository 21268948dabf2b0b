"""The bridge app: `create_app(settings)` (FastAPI factory + lifespan) and `serve(settings)`.

The lifespan is the composition root: it builds the task reader, the pending-replies registry and
the Kafka link, and disposes of them in reverse order at shutdown (requests still waiting then
get a 503). Nothing is created at import.
"""

from __future__ import annotations

import gc
import logging
import math
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp

from consumer.readside import TaskReader
from observability import logs, tracing
from producer_tools.bridge.auth import BridgeAuth
from producer_tools.bridge.errors import RETRY_AFTER_S, install_error_handlers
from producer_tools.bridge.fastpath import StartTaskFastPath
from producer_tools.bridge.kafka import KafkaLink
from producer_tools.bridge.messages import PendingRequests, check_tenant_sources
from producer_tools.bridge.metrics import BridgeMetrics, RequestMetrics
from producer_tools.bridge.openapi import install_openapi
from producer_tools.bridge.pending import PendingReplies
from producer_tools.bridge.protocol import Bounds, protocol_class
from producer_tools.bridge.routes import LEGACY_PREFIX, PREFIX, install_routes
from producer_tools.bridge.sender import RequestSender
from producer_tools.bridge.settings import BridgeConfig, BridgeSettings
from producer_tools.bridge.state import Bridge
from producer_tools.bridge.uvicorn_check import check_uvicorn
from schemas.errors import BrokerUnavailableError

log = logging.getLogger(__name__)


class BridgeApp(FastAPI):
    """FastAPI with the bridge's front in front of its middleware stack: the request metrics,
    then the Start Task fast path (`fastpath.py`), which answers its own errors with the app's
    handlers and so needs none of FastAPI's error, telemetry and body-limit layers; every other
    request goes through them, inside the same metrics."""

    def __init__(self, *, metrics: BridgeMetrics, roots: tuple[str, ...], **options: Any) -> None:
        super().__init__(**options)
        self.state.metrics = metrics
        self._roots = roots

    def build_middleware_stack(self) -> ASGIApp:
        stack = StartTaskFastPath(super().build_middleware_stack(), self._roots)
        return RequestMetrics(stack, self.state.metrics)


def create_app(settings: BridgeConfig) -> FastAPI:
    """A bridge app for these settings (its clients are built when its lifespan starts).

    Raises ValueError at once when UCS_BRIDGE_AUTH_TOKENS holds an unusable token, or
    UCS_TENANTS a tenant too long to name in an event's source.
    """
    auth = BridgeAuth.from_settings(settings)
    tenancy = settings.contract.tenancy
    check_tenant_sources(tenancy)
    metrics = BridgeMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            reader = await stack.enter_async_context(TaskReader(settings.database))
            pending: PendingRequests = PendingReplies()
            stack.callback(
                pending.fail_all,
                BrokerUnavailableError(
                    "The bridge is shutting down: the request may still be processed; "
                    "retry with the same Idempotency-Key."
                ),
            )
            link = await stack.enter_async_context(KafkaLink(settings, pending))
            metrics.pending_replies.set_function(lambda: len(pending))
            metrics.kafka_link_up.set_function(lambda: 1 if link.ready else 0)
            app.state.bridge = Bridge(
                settings=settings,
                limits=settings.contract.limits,
                tenancy=tenancy,
                pending=pending,
                link=link,
                sender=RequestSender(link, pending, settings.bridge.reply_timeout_ms),
                reader=reader,
                auth=auth,
                metrics=metrics,
            )
            log.info(
                "bridge ready: reply topic %s, authentication %s",
                link.reply_topic,
                "on" if auth.enabled else "off",
            )
            yield
            del app.state.bridge

    app = BridgeApp(
        metrics=metrics,
        roots=(PREFIX, LEGACY_PREFIX) if settings.bridge.legacy_paths else (PREFIX,),
        # Spans and request metrics are the bridge's own (RequestMetrics, observability/):
        # FastAPI's native telemetry would add a second server span to every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        title="ucs-tasks bridge",
        version="1.0.0",
        lifespan=lifespan,
        redirect_slashes=False,  # an unknown path is a 404, never a redirect
        docs_url="/docs",
        redoc_url=None,
    )
    install_error_handlers(app)
    install_routes(app, legacy_paths=settings.bridge.legacy_paths)
    install_openapi(app, secured=auth.enabled, tenants=tenancy.multi)
    return app


def serve(settings: BridgeConfig) -> None:
    """Run the bridge with uvicorn (uvloop + httptools) until SIGINT/SIGTERM.

    A stop signal drains: no new connection is accepted, idle ones are closed, requests in
    progress get their answers (`connection: close`), then the lifespan closes the Kafka link
    and the database engine, and the process exits 0.
    """
    logs.configure(settings.log, "bridge")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # outages are reported by the link
    tracing.setup("ucs-tasks-bridge")
    check_uvicorn()
    config = server_config(create_app(settings), settings)
    # The modules and the app are never garbage: out of every collection, a full one (which
    # stalls every request in flight) scans only what requests allocate: ~20 ms became ~4.
    gc.freeze()
    # uvicorn restores the handlers it found after its graceful shutdown and raises the signal
    # it caught into them again (Unix convention: the exit status says "killed by SIGTERM").
    # A stop we drained is a normal exit: these no-ops make it exit 0.
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, _stopped)
    try:
        uvicorn.Server(config).run()
    finally:
        tracing.shutdown()


def _stopped(signum: int, frame: object) -> None:
    """The stop signal, raised again by uvicorn once it has drained: nothing left to do."""


def http_bounds(settings: BridgeSettings) -> Bounds:
    """The limits of the bridge's HTTP connections (producer_tools/bridge/protocol.py)."""
    return Bounds(
        max_connections=settings.max_connections,
        max_pending_requests=settings.max_pending_requests,
        header_timeout_s=settings.header_timeout_ms / 1000,
        body_timeout_s=settings.body_timeout_ms / 1000,
        max_url_bytes=settings.max_url_bytes,
        max_headers=settings.max_headers,
        max_header_bytes=settings.max_header_bytes,
        retry_after_s=RETRY_AFTER_S,
    )


def _metrics_of(app: FastAPI) -> BridgeMetrics:
    metrics: BridgeMetrics | None = getattr(app.state, "metrics", None)
    return metrics if metrics is not None else BridgeMetrics()  # a reference app of bench/


def server_config(app: FastAPI, settings: BridgeConfig) -> uvicorn.Config:
    """The bridge's uvicorn options (bench/bridge.py serves its reference apps with them too).

    The graceful-shutdown budget covers a request that has just started: its send timeout and
    its reply timeout (after which it is answered 202 or 504), plus a second.
    """
    b = settings.bridge
    return uvicorn.Config(
        app,
        host=b.host,
        port=b.port,
        loop="uvloop",
        http=protocol_class(http_bounds(b), _metrics_of(app).refused),
        ws="none",  # no WebSocket routes: an Upgrade request is served as plain HTTP
        lifespan="on",
        access_log=b.access_log,
        server_header=False,
        timeout_graceful_shutdown=math.ceil((b.send_timeout_ms + b.reply_timeout_ms) / 1000) + 1,
        log_config=None,  # keep the logging configured by the caller
    )
