"""The consumer as a real process: SIGKILL mid-flow loses and duplicates nothing."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import orjson
from sqlalchemy import text

from consumer.db.engine import build_engine
from tests.kafka_client import TaskClient
from tests.processes import start_consumer, started_consumer
from tests.servers import StackSettings

EVENTS = 5000


async def test_a_consumer_killed_mid_batch_and_restarted_loses_and_duplicates_nothing(
    settings: StackSettings, tmp_path: Path
) -> None:
    client = TaskClient(settings)
    await client.start()
    log = tmp_path / "consumer.log"
    ids = [f"crash-{settings.consumer.consumer_group}-{i}" for i in range(EVENTS)]
    try:
        await asyncio.gather(
            *(client.send(orjson.dumps({"state_id": i}), event_id=e, correlation_id=e)
              for i, e in enumerate(ids))
        )  # fmt: skip
        first = start_consumer(settings, log, batch_max_records=100)
        await client.wait_for(lambda: len(client.replies) >= EVENTS // 5, timeout=60)
        first.send_signal(signal.SIGKILL)
        first.wait()
        answered_before_kill = len(client.replies)
        assert answered_before_kill < EVENTS, "the kill came too late to test anything"

        second = await started_consumer(settings, log, batch_max_records=100)
        try:
            await client.wait_for(lambda: all(e in client.replies for e in ids), timeout=90)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=30) == 0
    finally:
        await client.stop()

    for event_id in ids:
        task_ids = {r.payload["task_id"] for r in client.replies[event_id]}
        assert len(task_ids) == 1, f"{event_id} answered with several task ids: {task_ids}"
    engine = build_engine(settings.database_url, 1)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text("SELECT event_id, count(*) FROM tasks WHERE event_id = ANY(:ids)"
                         " GROUP BY event_id"),
                    {"ids": ids},
                )
            ).all()  # fmt: skip
    finally:
        await engine.dispose()
    assert len(rows) == EVENTS
    assert all(count == 1 for _, count in rows)
    stored = {event_id for event_id, _ in rows}
    assert stored == set(ids)
