"""The consumer's own small HTTP port: `/metrics`, `/healthz`, `/readyz` (for Prometheus and
Kubernetes). Served by uvicorn inside the consumer's event loop; started and stopped by the
composition root.

- `/healthz`: 200 while the consume loop runs (also while it backs off from an outage: restarting
  the process would not bring a database back), 503 once it has stopped or failed.
- `/readyz`: 200 when the consumer is a group member and neither the broker nor the database is
  failing, else 503 with the usual error body naming what is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from consumer.metrics import ConsumerMetrics
from schemas.replies import ErrorBody, FieldError

log = logging.getLogger(__name__)


@dataclass
class Health:
    """What the consume loop reports about itself; read by the health routes."""

    running: bool = False
    member: bool = False
    """Partitions are assigned (or the group answered with none)."""
    down: dict[str, str] = field(default_factory=dict)
    """Dependency -> why it is failing right now (`kafka`, `postgresql`)."""

    def failing(self, dependency: str, reason: str) -> None:
        """A dependency failed (the loop backs off and retries)."""
        self.down[dependency] = reason

    def recovered(self, dependency: str) -> None:
        """A dependency answered again."""
        self.down.pop(dependency, None)


def _json(status: int, body: object) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def health_app(health: Health, metrics: ConsumerMetrics) -> Starlette:
    """The ASGI app of the health port."""

    async def metrics_route(_: Request) -> Response:
        metrics.ready.set(1 if health.member and not health.down else 0)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        if health.running:
            return _json(200, {"status": "alive"})
        body = ErrorBody(message="The consume loop is not running.")
        return _json(503, body.model_dump())

    async def readyz(_: Request) -> Response:
        problems = [FieldError(field=name, problem=why) for name, why in health.down.items()]
        if not health.member:
            problems.append(FieldError(field="kafka", problem="not a consumer-group member yet"))
        if not problems:
            return _json(200, {"status": "ready"})
        listed = "; ".join(f"{p.field}: {p.problem}" for p in problems)
        return _json(503, ErrorBody(message=f"Not ready: {listed}.", errors=problems).model_dump())

    routes = [
        Route("/metrics", metrics_route, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    return Starlette(routes=routes)


class _InLoopServer(uvicorn.Server):
    """uvicorn without its signal handlers: the consumer's own SIGTERM handling stays in charge."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HealthPortError(Exception):
    """The health port cannot be served: a setting to change, not a fault to retry."""


class HealthServer:
    """uvicorn serving `health_app` in the current event loop: `async with HealthServer(...)`."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, lifespan="off", access_log=False, log_config=None
        )
        self._server = _InLoopServer(config)
        self._task: asyncio.Task[None] | None = None
        self._host, self._requested = host, port
        self.port = port

    async def __aenter__(self) -> HealthServer:
        # Bound here, not by uvicorn: it ends the whole process (SystemExit) when it cannot bind.
        try:
            family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
            sock = socket.create_server((self._host, self._requested), family=family)
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise HealthPortError(
                f"the health port {self._host}:{self._requested} cannot be served ({why}): set "
                "UCS_CONSUMER_HEALTH_PORT (0: any free port) or UCS_CONSUMER_HEALTH_HOST"
            ) from None
        self.port = sock.getsockname()[1]
        self._task = asyncio.create_task(self._server.serve([sock]), name="consumer-health")
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the health server stopped while starting")
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *_: object) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
