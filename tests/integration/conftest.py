"""Integration fixtures: an in-process consumer and a reply-collecting client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from consumer.bootstrap import run_consumer
from tests.kafka_client import TaskClient
from tests.servers import StackSettings


async def _running_consumer(settings: StackSettings) -> AsyncIterator[asyncio.Task[object]]:
    stopping = asyncio.Event()
    task: asyncio.Task[object] = asyncio.create_task(run_consumer(settings, stopping))
    yield task
    stopping.set()
    await asyncio.wait_for(task, timeout=30)
    assert task.exception() is None


@pytest.fixture
async def client(settings: StackSettings) -> AsyncIterator[TaskClient]:
    task_client = TaskClient(settings)
    await task_client.start()
    yield task_client
    await task_client.stop()


@pytest.fixture
async def consumer(settings: StackSettings) -> AsyncIterator[asyncio.Task[object]]:
    """The real consumer (bootstrap.run_consumer) running in this event loop, for one test."""
    async for task in _running_consumer(settings):
        yield task


@pytest.fixture(scope="module")
async def module_settings(kafka_bootstrap: str, database_url: str) -> StackSettings:
    """Topics shared by one module's tests (each test uses its own event ids)."""
    from tests import servers
    from tests.servers import create_topics

    shared = servers.make_settings(kafka_bootstrap, database_url)
    await create_topics(shared)
    return shared


@pytest.fixture(scope="module")
async def module_consumer(module_settings: StackSettings) -> AsyncIterator[asyncio.Task[object]]:
    """One consumer for a whole module: a group join costs seconds on the embedded broker."""
    async for task in _running_consumer(module_settings):
        yield task
