"""Field types by mode, on HTTP and on Kafka alike: `genesys` (the default) coerces decimal strings
into integer fields and integers into string fields, as Context Services does; `strict` does not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import orjson
import pytest

from consumer.bootstrap import run_consumer
from producer_tools.bridge.app import create_app
from tests.kafka_client import TaskClient
from tests.reference import REFERENCE_BODY_SYNTAX_FIXED, REFERENCE_SERVICE_ID
from tests.servers import StackSettings, create_topics, make_settings

START = f"/genesys/1/cs/services/{REFERENCE_SERVICE_ID}/tasks/start"
JSON = {"Content-Type": "application/json"}


@asynccontextmanager
async def system(settings: StackSettings) -> AsyncIterator[tuple[httpx.AsyncClient, TaskClient]]:
    """A consumer and a bridge in this event loop, with an HTTP and a Kafka client."""
    await create_topics(settings)
    stopping = asyncio.Event()
    consumer = asyncio.create_task(run_consumer(settings, stopping))
    app = create_app(settings)
    kafka = TaskClient(settings)
    await kafka.start()
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                yield http, kafka
    finally:
        await kafka.stop()
        stopping.set()
        await asyncio.wait_for(consumer, timeout=30)


def with_mode(kafka_bootstrap: str, database_url: str, mode: str) -> StackSettings:
    return make_settings(kafka_bootstrap, database_url).with_(
        field_mode=mode, bridge_reply_timeout_ms=15_000
    )


@pytest.fixture(scope="module")
async def genesys(kafka_bootstrap: str, database_url: str) -> AsyncIterator[tuple[object, ...]]:
    async with system(with_mode(kafka_bootstrap, database_url, "genesys")) as clients:
        yield clients


@pytest.fixture(scope="module")
async def strict(kafka_bootstrap: str, database_url: str) -> AsyncIterator[tuple[object, ...]]:
    async with system(with_mode(kafka_bootstrap, database_url, "strict")) as clients:
        yield clients


async def read_back(http: httpx.AsyncClient, created: httpx.Response) -> dict[str, object]:
    assert created.status_code == 201, created.text
    read = await http.get(created.headers["location"])
    assert read.status_code == 200, read.text
    document: dict[str, object] = orjson.loads(read.content)
    return document


async def test_the_reference_example_with_only_its_syntax_fixed_gets_a_201_by_default(
    genesys: tuple[httpx.AsyncClient, TaskClient],
) -> None:
    http, _ = genesys
    created = await http.post(START, content=REFERENCE_BODY_SYNTAX_FIXED, headers=JSON)
    document = await read_back(http, created)
    assert document["started"]["interaction_id"] == "42"  # type: ignore[index]
    assert document["state_id"] == 24


async def test_a_decimal_string_state_id_is_stored_and_read_back_as_an_integer_by_default(
    genesys: tuple[httpx.AsyncClient, TaskClient],
) -> None:
    http, _ = genesys
    created = await http.post(START, content=b'{"state_id": "24"}', headers=JSON)
    assert (await read_back(http, created))["state_id"] == 24


async def test_on_kafka_the_default_mode_coerces_the_same_way(
    genesys: tuple[httpx.AsyncClient, TaskClient],
) -> None:
    _, kafka = genesys
    reply = await kafka.reply(await kafka.send(REFERENCE_BODY_SYNTAX_FIXED, REFERENCE_SERVICE_ID))
    assert reply.payload["kind"] == "task.created"
    task = reply.payload["task"]
    assert (task["interaction_id"], task["state_id"]) == ("42", 24)
    coerced = await kafka.reply(await kafka.send(b'{"state_id": "-7", "session_id": 5}'))
    assert (coerced.payload["task"]["state_id"], coerced.payload["task"]["session_id"]) == (-7, "5")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"state_id": 2.0}', "state_id"),
        (b'{"state_id": true}', "state_id"),
        (b'{"state_id": ""}', "state_id"),
        (b'{"state_id": "2147483648"}', "state_id"),
        (b'{"interaction_id": 4.2}', "interaction_id"),
        (b'{"session_id": false}', "session_id"),
    ],
)
async def test_floats_booleans_and_out_of_range_strings_are_refused_in_both_modes(
    genesys: tuple[httpx.AsyncClient, TaskClient],
    strict: tuple[httpx.AsyncClient, TaskClient],
    body: bytes,
    field: str,
) -> None:
    for http, kafka in (genesys, strict):
        refused = await http.post(START, content=body, headers=JSON)
        assert refused.status_code == 400, refused.text
        assert field in [e["field"] for e in refused.json()["errors"]]
        reply = await kafka.reply(await kafka.send(body))
        assert reply.payload["kind"] == "task.rejected"
        assert field in [e["field"] for e in reply.payload["error"]["errors"]]


async def test_strict_mode_refuses_a_number_for_a_string_field_on_http_and_kafka(
    strict: tuple[httpx.AsyncClient, TaskClient],
) -> None:
    http, kafka = strict
    refused = await http.post(START, content=REFERENCE_BODY_SYNTAX_FIXED, headers=JSON)
    assert refused.status_code == 400, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["interaction_id"]
    reply = await kafka.reply(await kafka.send(b'{"state_id": "24"}'))
    assert reply.payload["kind"] == "task.rejected"
    assert [e["field"] for e in reply.payload["error"]["errors"]] == ["state_id"]
