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
HELD_BACK = 1000
"""Events sent only once the first consumer is dead: whatever the machine's speed, the kill
comes while events are still to be answered (all sent at once, a fast consumer had answered
every one before the client had read a fifth of the replies)."""
CHUNK = 50


async def test_a_consumer_killed_mid_batch_and_restarted_loses_and_duplicates_nothing(
    settings: StackSettings, tmp_path: Path
) -> None:
    client = TaskClient(settings)
    await client.start()
    log = tmp_path / "consumer.log"
    ids = [f"crash-{settings.consumer.consumer_group}-{i}" for i in range(EVENTS)]
    killed = asyncio.Event()

    async def send_steadily() -> None:
        """Chunk after chunk, so the consumer is busy with fresh records when it is killed;
        the last HELD_BACK only after the kill."""
        for start in range(0, EVENTS, CHUNK):
            if start == EVENTS - HELD_BACK:
                await killed.wait()
            await asyncio.gather(
                *(client.send(orjson.dumps({"state_id": i}), event_id=ids[i], correlation_id=ids[i])
                  for i in range(start, min(EVENTS, start + CHUNK)))
            )  # fmt: skip
            await asyncio.sleep(0.005)

    sending = asyncio.create_task(send_steadily())
    try:
        first = start_consumer(settings, log, batch_max_records=100)
        await client.wait_for(lambda: len(client.replies) >= EVENTS // 5, timeout=60)
        first.send_signal(signal.SIGKILL)
        first.wait()
        answered_before_kill = len(client.replies)
        killed.set()
        assert answered_before_kill < EVENTS, "the kill came too late to test anything"

        second = await started_consumer(settings, log, batch_max_records=100)
        try:
            await sending
            await client.wait_for(lambda: all(e in client.replies for e in ids), timeout=90)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=30) == 0
    finally:
        killed.set()
        await sending
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
