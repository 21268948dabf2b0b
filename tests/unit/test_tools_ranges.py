"""`end_offsets` (producer_tools/tools/_ranges.py) against a reader that never delivers: a fake,
as the broker's side of it (a fetch that never brings the last batch) cannot be had on demand."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition

from producer_tools.tools import _ranges
from producer_tools.tools._progress import EXIT_BROKER, ToolError

TP = TopicPartition("ucs.tasks.start", 3)


class SilentReader:
    """Lists an end past the beginning, then delivers nothing and never moves."""

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 0)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 5)

    def assign(self, tps: list[TopicPartition]) -> None:
        pass

    def seek(self, tp: TopicPartition, offset: int) -> None:
        pass

    async def getmany(self, *tps: TopicPartition, **options: Any) -> dict[TopicPartition, list]:
        await asyncio.sleep(0.01)
        return {}

    async def position(self, tp: TopicPartition) -> int:
        return 4


async def test_a_last_batch_never_delivered_is_a_broker_error_naming_the_partition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_ranges, "PROBE_TIMEOUT_S", 0.1)
    with pytest.raises(ToolError) as raised:
        await _ranges.end_offsets(SilentReader(), [TP])  # type: ignore[arg-type]
    assert raised.value.exit_code == EXIT_BROKER
    assert "ucs.tasks.start:3" in str(raised.value)
    assert "within 0.1 s" in str(raised.value)
