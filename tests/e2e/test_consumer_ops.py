"""The consumer process for operators: its health port (/metrics after real traffic, parsed with
Prometheus' own parser; /healthz; /readyz naming what is down) and JSON logs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from producer_tools.devstack.embedded import free_port
from tests.kafka_client import TaskClient
from tests.processes import start_consumer
from tests.servers import StackSettings


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def wait_for(check: Any, timeout_s: float = 60) -> Any:
    async with asyncio.timeout(timeout_s):
        while True:
            found = await check()
            if found:
                return found
            await asyncio.sleep(0.2)


async def test_metrics_logs_and_health_of_a_consumer_process(
    settings: StackSettings, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "consumer.log"
    process = start_consumer(
        settings, log, consumer_health_port=port, log_format="json", log_level="INFO"
    )
    base = f"http://127.0.0.1:{port}"
    client = TaskClient(settings)
    await client.start()
    try:
        async with httpx.AsyncClient(timeout=5) as http:

            async def ready() -> bool:
                try:
                    return (await http.get(f"{base}/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(ready)
            assert (await http.get(f"{base}/healthz")).status_code == 200
            created = [await client.reply(await client.send(b'{"state_id": 7}')) for _ in range(3)]
            refused = await client.reply(await client.send(b'{"state_id": 1.5}', event_id="bad-1"))
            assert refused.payload["kind"] == "task.rejected"
            await client.send_raw(b"not a cloud event", b"1")

            async def scraped() -> dict[Any, float] | None:
                found = samples((await http.get(f"{base}/metrics")).text)
                events = ("ucs_consumer_events_total", (("outcome", "dead_lettered"),))
                return found if found.get(events) == 1 else None

            found = await wait_for(scraped)
    finally:
        await client.stop()
        process.terminate()
        await asyncio.to_thread(process.wait, 30)
    assert process.returncode == 0
    assert found[("ucs_consumer_events_total", (("outcome", "created"),))] == len(created)
    assert found[("ucs_consumer_events_total", (("outcome", "rejected"),))] == 1
    assert found[("ucs_consumer_rejections_total", (("code", "invalid_field"),))] == 1
    assert found[("ucs_consumer_dead_letters_total", (("reason", "undecodable"),))] == 1
    assert found[("ucs_consumer_batch_records_count", ())] >= 1
    assert found[("ucs_consumer_commits_total", (("result", "committed"),))] >= 1
    assert found[("ucs_consumer_ready", ())] == 1
    assert ("ucs_consumer_database_duration_seconds_count", ()) in found
    lines = [orjson.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines, "no JSON log lines"
    rejection = next(line for line in lines if line.get("kind") == "rejection")
    assert rejection["event_id"] == "bad-1"
    assert {"partition", "offset", "code", "level", "time", "message"} <= set(rejection)
    assert any(line.get("kind") == "dead_letter" and "offset" in line for line in lines)


async def test_readyz_names_the_database_when_it_is_unreachable(
    settings: StackSettings, tmp_path: Path
) -> None:
    port = free_port()
    down = settings.with_(database_url=f"postgresql://nobody@127.0.0.1:{free_port()}/none")
    process = start_consumer(down, tmp_path / "consumer.log", consumer_health_port=port)
    try:
        async with httpx.AsyncClient(timeout=5) as http:

            async def answered() -> httpx.Response | None:
                try:
                    return await http.get(f"http://127.0.0.1:{port}/readyz")
                except httpx.TransportError:
                    return None

            async def named() -> httpx.Response | None:
                response = await answered()
                failing = response is not None and "postgresql" in response.text
                return response if failing else None

            response = await wait_for(named)
            assert response.status_code == 503
            assert "postgresql" in [e["field"] for e in response.json()["errors"]]
            assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 30)
