"""The consumer's health port: /healthz, /readyz and /metrics from what the loop reports."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from consumer.health import Health, health_app
from consumer.metrics import ConsumerMetrics


def client_of(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://health")


async def test_healthz_says_alive_while_the_loop_runs_even_through_an_outage() -> None:
    health = Health()
    client = client_of(health_app(health, ConsumerMetrics()))
    assert (await client.get("/healthz")).status_code == 503
    health.running = True
    health.failing("postgresql", "connection refused")
    assert (await client.get("/healthz")).status_code == 200


async def test_readyz_names_what_is_down() -> None:
    health = Health(running=True)
    client = client_of(health_app(health, ConsumerMetrics()))
    waiting = await client.get("/readyz")
    assert waiting.status_code == 503
    assert [e["field"] for e in waiting.json()["errors"]] == ["kafka"]
    health.member = True
    assert (await client.get("/readyz")).status_code == 200
    health.failing("postgresql", "connection refused")
    down = await client.get("/readyz")
    assert down.status_code == 503
    assert down.json()["errors"] == [{"field": "postgresql", "problem": "connection refused"}]
    assert down.json()["message"] == "Not ready: postgresql: connection refused."
    health.recovered("postgresql")
    assert (await client.get("/readyz")).status_code == 200


async def test_metrics_parse_with_the_prometheus_parser_and_report_readiness() -> None:
    health = Health(running=True, member=True)
    metrics = ConsumerMetrics()
    metrics.events.labels("created").inc(3)
    metrics.lag.labels("requests", "0").set(12)
    body = await client_of(health_app(health, metrics)).get("/metrics")
    assert body.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.text)}
    created = [s for s in families["ucs_consumer_events"].samples if s.name.endswith("_total")]
    assert [(s.labels, s.value) for s in created] == [({"outcome": "created"}, 3.0)]
    assert families["ucs_consumer_ready"].samples[0].value == 1.0
    assert families["ucs_consumer_lag_records"].samples[0].labels == {
        "topic": "requests",
        "partition": "0",
    }
    assert "process_resident_memory_bytes" in families
