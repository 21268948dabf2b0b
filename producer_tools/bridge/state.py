"""What the lifespan builds and the routes use: one `Bridge` per app, on `app.state.bridge`."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from consumer.readside import TaskReader
from producer_tools.bridge.auth import BridgeAuth
from producer_tools.bridge.kafka import KafkaLink
from producer_tools.bridge.messages import PendingRequests
from producer_tools.bridge.metrics import BridgeMetrics
from producer_tools.bridge.sender import RequestSender
from producer_tools.bridge.settings import BridgeConfig
from schemas.task_start import Limits
from schemas.tenants import Tenancy


@dataclass(frozen=True, slots=True)
class Bridge:
    """The live collaborators of one bridge app."""

    settings: BridgeConfig
    limits: Limits
    tenancy: Tenancy
    """The configured tenants (`UCS_TENANTS`): multi-tenant mode when any."""
    pending: PendingRequests
    link: KafkaLink
    sender: RequestSender
    reader: TaskReader
    auth: BridgeAuth
    metrics: BridgeMetrics


async def get_bridge(request: Request) -> Bridge:
    """The app's Bridge (a FastAPI dependency); a clear error when the lifespan did not run.

    Async on purpose: FastAPI runs a sync dependency in a worker thread, a hop per request.
    """
    bridge: Bridge | None = getattr(request.app.state, "bridge", None)
    if bridge is None:
        raise RuntimeError("the bridge app is used before its lifespan started it")
    return bridge
