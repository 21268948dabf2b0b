"""Backing off after a transient failure (broker or database away), unless asked to stop."""

from __future__ import annotations

import asyncio
import random

from schemas.settings import RetrySettings


def backoff_s(retry: RetrySettings, attempt: int) -> float:
    """The pause before retry number `attempt` (0-based), with jitter."""
    return retry.delay_s(attempt) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto


async def sleep_unless(stopping: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if `stopping` is set meanwhile."""
    try:
        async with asyncio.timeout(seconds):
            await stopping.wait()
    except TimeoutError:
        pass
