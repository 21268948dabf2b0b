"""The bridge's request metrics middleware: counts, durations and, with spans exported, the
HTTP server span of each request."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider  # the `otel` extra, which make installs
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from observability import tracing
from producer_tools.bridge.metrics import BridgeMetrics, RequestMetrics

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
ROUTE = "/genesys/1/cs/services/{service_id}/tasks/start"


class Route:
    path = ROUTE


def answering(status: int) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["route"] = Route()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


async def request(middleware: RequestMetrics, headers: list[tuple[bytes, bytes]]) -> list[Any]:
    scope = {"type": "http", "method": "POST", "path": "/genesys/1/cs/services/1/tasks/start"}
    scope["headers"] = headers
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await middleware(scope, receive, send)
    return sent


def sample(metrics: BridgeMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_requests_are_counted_and_timed_by_route_template_method_and_status() -> None:
    metrics = BridgeMetrics(CollectorRegistry())
    created, refused = (
        RequestMetrics(answering(201), metrics),
        RequestMetrics(answering(400), metrics),
    )
    for _ in range(3):
        await request(created, [])
    await request(refused, [])
    labels = {"route": ROUTE, "method": "POST"}
    assert sample(metrics, "ucs_bridge_requests_total", status="201", **labels) == 3
    assert sample(metrics, "ucs_bridge_requests_total", status="400", **labels) == 1
    assert sample(metrics, "ucs_bridge_request_duration_seconds_count", **labels) == 4


async def test_with_spans_exported_each_request_is_a_server_span_under_the_callers_trace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    metrics = BridgeMetrics(CollectorRegistry())

    sent = await request(
        RequestMetrics(answering(201), metrics), [(b"traceparent", PARENT.encode())]
    )

    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [201]
    (span,) = exporter.get_finished_spans()
    assert span.name == "HTTP POST"
    assert span.attributes is not None
    assert span.attributes["url.path"] == "/genesys/1/cs/services/1/tasks/start"
    assert format(span.context.trace_id, "032x") == PARENT.split("-")[1]
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == PARENT.split("-")[2]
