"""Shared fixtures: real servers for integration/e2e tests, started once per session and only
when a test asks for them (unit tests never import aiokafka or sqlalchemy through here)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.servers import StackSettings

_FOLDER_MARKERS = {"integration": pytest.mark.integration, "e2e": pytest.mark.e2e}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests under tests/integration and tests/e2e get the marker of their folder."""
    tests_dir = Path(__file__).parent
    for item in items:
        try:
            folder = item.path.relative_to(tests_dir).parts[0]
        except (ValueError, IndexError):
            continue
        if (marker := _FOLDER_MARKERS.get(folder)) is not None:
            item.add_marker(marker)


@pytest.fixture(scope="session")
async def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """Bootstrap servers of the session's broker (env, testcontainers or embedded tansu).

    Every aiokafka client of the session asks the broker not to create missing topics, as the
    consumer's own process does (it installs the same thing process-wide when it runs, so the
    tests' clients behave alike whichever test ran first)."""
    from consumer.kafka.aiokafka_internals import install_no_topic_auto_creation
    from tests import servers

    install_no_topic_auto_creation()

    async with contextlib.AsyncExitStack() as stack:
        try:
            bootstrap = await stack.enter_async_context(
                servers.kafka_server(tmp_path_factory.mktemp("kafka"))
            )
        except servers.ServerUnavailableError as exc:
            pytest.skip(str(exc))
        yield bootstrap


@pytest.fixture(scope="session")
async def postgres_server_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """SQLAlchemy URL of the session's PostgreSQL server (env, testcontainers or embedded)."""
    from tests import servers

    async with contextlib.AsyncExitStack() as stack:
        try:
            url = await stack.enter_async_context(
                servers.postgres_server(tmp_path_factory.mktemp("postgres"))
            )
        except servers.ServerUnavailableError as exc:
            pytest.skip(str(exc))
        yield url


@pytest.fixture(scope="session")
async def database_url(postgres_server_url: str) -> AsyncIterator[str]:
    """A fresh database for the session, migrated to head, dropped at the end."""
    from consumer.db.migrate import upgrade
    from tests import servers

    database = await servers.create_session_database(postgres_server_url)
    try:
        await asyncio.to_thread(upgrade, database.url)
        yield database.url
    finally:
        await servers.drop_session_database(database)


@pytest.fixture
async def settings(kafka_bootstrap: str, database_url: str) -> StackSettings:
    """StackSettings for one test: the session's servers, random topics (created) and group."""
    from tests import servers
    from tests.servers import create_topics

    test_settings = servers.make_settings(kafka_bootstrap, database_url)
    await create_topics(test_settings)
    return test_settings
