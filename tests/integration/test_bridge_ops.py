"""The bridge for operators: /metrics after real traffic (parsed with Prometheus' own parser),
and W3C trace context carried from the HTTP request onto the Kafka request."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import orjson
from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from producer_tools.bridge.app import create_app
from tests.reference import REFERENCE_BODY, REFERENCE_SERVICE_ID
from tests.servers import StackSettings

START = "/genesys/1/cs/services/{}/tasks/start"
JSON = {"Content-Type": "application/json"}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@asynccontextmanager
async def bridge_client(settings: StackSettings) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings.with_(
        bridge_reply_topic=f"{settings.topics.requests}.replies.{uuid.uuid4().hex[:8]}",
        bridge_reply_timeout_ms=15_000,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_count_requests_by_route_template_and_status_after_real_traffic(
    settings: StackSettings, consumer: object
) -> None:
    async with bridge_client(settings) as client:
        for _ in range(3):
            created = await client.post(
                START.format(REFERENCE_SERVICE_ID), content=REFERENCE_BODY, headers=JSON
            )
            assert created.status_code == 201, created.text
        refused = await client.post(START.format(0), content=b"{}", headers=JSON)
        assert refused.status_code == 400
        assert (await client.get("/no/such/path")).status_code == 404
        scraped = await client.get("/metrics")
    assert scraped.status_code == 200
    found = samples(scraped.text)
    route = "/genesys/1/cs/services/{service_id}/tasks/start"
    key = (("method", "POST"), ("route", route), ("status", "201"))
    assert found[("ucs_bridge_requests_total", key)] == 3
    assert (
        found[
            ("ucs_bridge_requests_total", (("method", "POST"), ("route", route), ("status", "400")))
        ]
        == 1
    )
    assert (
        found[
            (
                "ucs_bridge_requests_total",
                (("method", "GET"), ("route", "unmatched"), ("status", "404")),
            )
        ]
        == 1
    )
    count = found[
        ("ucs_bridge_request_duration_seconds_count", (("method", "POST"), ("route", route)))
    ]
    assert count == 4
    assert found[("ucs_bridge_pending_replies", ())] == 0
    assert found[("ucs_bridge_kafka_link_up", ())] == 1
    assert ("ucs_bridge_accepted_without_reply_total", ()) in found
    assert ("process_resident_memory_bytes", ()) in found


async def test_a_traceparent_on_the_http_request_travels_on_the_kafka_request(
    settings: StackSettings, consumer: object
) -> None:
    async with bridge_client(settings) as client:
        created = await client.post(
            START.format(REFERENCE_SERVICE_ID),
            content=REFERENCE_BODY,
            headers={**JSON, "traceparent": TRACEPARENT, "tracestate": "vendor=a1"},
        )
        assert created.status_code == 201, created.text
        untraced = await client.post(
            START.format(REFERENCE_SERVICE_ID),
            content=REFERENCE_BODY,
            headers={**JSON, "traceparent": "not-a-trace"},
        )
        assert untraced.status_code == 201, untraced.text
    reader = AIOKafkaConsumer(
        settings.topics.requests,
        **settings.kafka.client_options(),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await reader.start()
    try:
        records = []
        while len(records) < 2:
            batch = await reader.getmany(timeout_ms=5000)
            assert batch, "the requests never reached the topic"
            records += [r for part in batch.values() for r in part]
    finally:
        await reader.stop()
    traced, plain = (dict(r.headers) for r in sorted(records, key=lambda r: r.timestamp))
    assert traced["traceparent"] == TRACEPARENT.encode()
    assert traced["tracestate"] == b"vendor=a1"
    assert "traceparent" not in plain, "a malformed traceparent is not passed on"


async def test_the_bridge_serves_the_asyncapi_document_beside_openapi(
    settings: StackSettings,
) -> None:
    from schemas import asyncapi

    async with bridge_client(settings) as client:
        served = await client.get("/asyncapi.json")
        openapi = await client.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == asyncapi.document()
    assert "/asyncapi.json" in openapi.json()["paths"]


async def test_a_traceparent_comes_back_on_the_reply_to_the_request(
    settings: StackSettings, consumer: object
) -> None:
    async with bridge_client(settings) as client:
        created = await client.post(
            START.format(REFERENCE_SERVICE_ID),
            content=REFERENCE_BODY,
            headers={**JSON, "traceparent": TRACEPARENT, "tracestate": "vendor=a1"},
        )
        assert created.status_code == 201, created.text
    reader = AIOKafkaConsumer(
        settings.topics.created,
        **settings.kafka.client_options(),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await reader.start()
    try:
        found = None
        async with asyncio.timeout(20):
            while found is None:
                batch = await reader.getmany(timeout_ms=1000)
                for record in (r for part in batch.values() for r in part):
                    if orjson.loads(record.value)["task_id"] == created.json()["task_id"]:
                        found = dict(record.headers)
    finally:
        await reader.stop()
    assert found["traceparent"] == TRACEPARENT.encode()
    assert found["tracestate"] == b"vendor=a1"
