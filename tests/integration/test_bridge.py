"""The HTTP bridge against a real broker and PostgreSQL (and the real consumer, in-process)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka import client as aiokafka_client
from aiokafka.protocol.metadata import MetadataRequest
from fastapi import FastAPI
from sqlalchemy import text

from consumer.bootstrap import run_consumer
from consumer.db.engine import build_engine
from producer_tools.bridge.app import create_app
from producer_tools.bridge.errors import BROKER_UNAVAILABLE, DATABASE_UNAVAILABLE
from producer_tools.bridge.kafka import KafkaLink
from producer_tools.bridge.messages import BRIDGE_SOURCE
from producer_tools.bridge.pending import PendingReplies
from producer_tools.bridge.routes import (
    DATABASE_NOT_READY,
    END_PATH,
    EXTENSION_PATH,
    QUERY_PATHS,
    START_PATH,
    STATUS_PATH,
    TASK_PATHS,
)
from producer_tools.bridge.state import Bridge
from producer_tools.devstack.embedded import EmbeddedBroker, free_port
from schemas import wire
from schemas.replies import EXCEPTION_CLASS, EventRef
from schemas.requests import TaskRequest
from schemas.validation import EventKind
from tests.reference import (
    REFERENCE_ATTACHED,
    REFERENCE_BODY,
    REFERENCE_BODY_VERBATIM,
    REFERENCE_SERVICE_ID,
)
from tests.servers import StackSettings, create_topics, make_settings, topic_names

SID = REFERENCE_SERVICE_ID
JSON_HEADERS = {"Content-Type": "application/json"}


def start_url(service_id: int | str = SID) -> str:
    return START_PATH.format(service_id=service_id)


def bridge_settings(settings: StackSettings, **overrides: Any) -> StackSettings:
    """The test's settings for one bridge instance: its own reply topic, short timeouts."""
    values: dict[str, Any] = {
        "bridge_reply_topic": f"{settings.topics.requests}.replies.{uuid.uuid4().hex[:8]}",
        "bridge_reply_partitions": 3,
        "bridge_reply_timeout_ms": 15_000,  # the consumer's first group join takes seconds
    }
    return settings.with_(**values | overrides)


@dataclass
class Running:
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def bridge(self) -> Bridge:
        bridge: Bridge = self.app.state.bridge
        return bridge


@asynccontextmanager
async def running_bridge(settings: StackSettings) -> AsyncIterator[Running]:
    """A bridge app with its lifespan running, and an HTTP client talking to it in-process."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Running(app, client)


INTERNAL_TEXT = re.compile(
    r"\w+Error\b|\w+Exception\b|asyncpg|sqlalchemy|aiokafka|DBAPI|Traceback"
    r"|Connect call failed|Unable to bootstrap|\[Errno"
)
"""What driver, broker or Python error text looks like (the `exception` field excepted)."""


def assert_no_internal_text(*responses: httpx.Response) -> None:
    """No answer repeats an internal error's text or class name (they are logged instead)."""
    for response in responses:
        body = response.json()
        shown = orjson.dumps({k: v for k, v in body.items() if k != "exception"}).decode()
        assert not INTERNAL_TEXT.search(shown), shown


def assert_error_body(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"message", "exception", "errors"}
    assert body["exception"] == EXCEPTION_CLASS
    assert body["message"]
    return body


async def count_tasks(settings: StackSettings, event_id: str) -> int:
    engine = build_engine(settings.database_url, 1)
    try:
        async with engine.connect() as conn:
            sql = text("SELECT count(*) FROM tasks WHERE event_source = :s AND event_id = :i")
            return int((await conn.execute(sql, {"s": BRIDGE_SOURCE, "i": event_id})).scalar_one())
    finally:
        await engine.dispose()


# --- the happy path and reads


async def test_the_corrected_reference_example_gets_201_and_its_location_reads_back_the_same_data(
    settings: StackSettings, consumer: object
) -> None:
    async with running_bridge(bridge_settings(settings)) as running:
        client = running.client
        created = await client.post(start_url(), content=REFERENCE_BODY, headers=JSON_HEADERS)
        assert created.status_code == 201, created.text
        task_id = created.json()["task_id"]
        assert created.content == orjson.dumps({"task_id": task_id})
        location = created.headers["location"]
        assert location == f"{settings.contract.base_uri}/service/{SID}/tasks/{task_id}"

        read = await client.get(location, params={"extensions": "*"})
        assert read.status_code == 200, read.text
        document = orjson.loads(read.content)
        assert list(document) == [
            "task_id", "service_id", "state_id", "task_type", "est_duration", "started",
            *REFERENCE_ATTACHED,
        ]  # fmt: skip
        assert {k: document[k] for k in REFERENCE_ATTACHED} == REFERENCE_ATTACHED
        assert list(document["Survey"]) == list(REFERENCE_ATTACHED["Survey"])
        assert list(document["Proposal"][0]) == ["car type", "price", "seats", "comments"]
        assert (document["task_id"], document["service_id"]) == (task_id, SID)
        assert (document["state_id"], document["task_type"], document["est_duration"]) == (
            24, "customer info", 460,
        )  # fmt: skip
        assert document["started"]["interaction_id"] == "42"
        assert document["started"]["timestamp"].endswith("Z")

        plural = location.replace("/service/", "/services/")
        assert (await client.get(plural, params={"extensions": "*"})).content == read.content
        bare = orjson.loads((await client.get(location)).content)
        assert not set(REFERENCE_ATTACHED) & set(bare)
        chosen = orjson.loads((await client.get(location + "?extensions=Proposal,nope")).content)
        assert "Proposal" in chosen
        assert "Survey" not in chosen

        other_service = f"/genesys/1/cs/services/{SID + 1}/tasks/{task_id}"
        assert_error_body(await client.get(other_service, params={"extensions": "*"}), 404)
        assert_error_body(await client.get(f"/genesys/1/cs/service/{SID}/tasks/2147483647"), 404)
        assert_error_body(await client.get(f"/genesys/1/cs/service/{SID}/tasks/{2**40}"), 404)
        assert_error_body(await client.get(f"/genesys/1/cs/service/abc/tasks/{task_id}"), 400)


async def test_an_idempotency_key_retry_gets_the_same_task_and_makes_one_row(
    settings: StackSettings, consumer: object
) -> None:
    key = f"order-{uuid.uuid4()}"
    headers = {**JSON_HEADERS, "Idempotency-Key": key}
    async with running_bridge(bridge_settings(settings)) as running:
        first = await running.client.post(start_url(), content=b'{"state_id": 1}', headers=headers)
        again = await running.client.post(start_url(), content=b'{"state_id": 1}', headers=headers)
        other = await running.client.post(
            start_url(), content=b'{"state_id": 1}', headers=JSON_HEADERS
        )
        assert (first.status_code, again.status_code, other.status_code) == (201, 201, 201)
        assert first.json() == again.json()
        assert first.headers["location"] == again.headers["location"]
        assert other.json()["task_id"] != first.json()["task_id"]
        assert await count_tasks(settings, key) == 1

        reused = await running.client.post(start_url(SID + 1), content=b"{}", headers=headers)
        body = assert_error_body(reused, 422)
        assert body["errors"][0]["field"] == "Idempotency-Key"


async def test_two_bridges_under_500_concurrent_requests_never_cross_replies(
    settings: StackSettings, consumer: object
) -> None:
    count = 500
    # Every request must get its own reply, however long the burst takes. The burst normally
    # completes in ~0.2 s (80 rounds in a row: at most 0.23 s for a request); one full CI run
    # answered some requests 202 after the default 15 s, which was not reproduced and is the
    # bridge's correct answer past its timeout, but not what this test checks.
    patient = {"bridge_reply_timeout_ms": 60_000}  # under the per-test timeout (120 s)
    async with (
        running_bridge(bridge_settings(settings, **patient)) as one,
        running_bridge(bridge_settings(settings, **patient)) as two,
    ):
        assert one.bridge.link.reply_topic != two.bridge.link.reply_topic
        for running in (one, two):  # the consumer joins its group once, before the burst
            warm = await running.client.post(start_url(), content=b"{}", headers=JSON_HEADERS)
            assert warm.status_code == 201

        async def start(i: int) -> tuple[int, httpx.Response]:
            client = (one if i % 2 else two).client
            body = orjson.dumps({"state_id": i, "session_id": f"request-{i}"})
            return i, await client.post(start_url(), content=body, headers=JSON_HEADERS)

        answers = await asyncio.gather(*(start(i) for i in range(count)))
        assert all(r.status_code == 201 for _, r in answers), {r.status_code for _, r in answers}
        assert len({r.json()["task_id"] for _, r in answers}) == count

        limit = asyncio.Semaphore(50)

        async def read(i: int, created: httpx.Response) -> tuple[int, dict[str, Any]]:
            async with limit:
                response = await one.client.get(created.headers["location"])
            return i, response.json()

        for i, task in await asyncio.gather(*(read(i, r) for i, r in answers)):
            assert (task["state_id"], task["started"]["session_id"]) == (i, f"request-{i}")
        assert len(one.bridge.pending) == len(two.bridge.pending) == 0


# --- slow replies


async def test_without_a_reply_in_time_a_202_points_at_a_status_that_resolves_to_the_task(
    settings: StackSettings,
) -> None:
    key = f"slow/{uuid.uuid4().hex}?#%"
    headers = {**JSON_HEADERS, "Idempotency-Key": key}
    async with running_bridge(bridge_settings(settings, bridge_reply_timeout_ms=300)) as running:
        client = running.client
        accepted = await client.post(start_url(), content=b'{"state_id": 7}', headers=headers)
        assert accepted.status_code == 202, accepted.text
        status_url = accepted.headers["location"]
        assert (
            status_url
            == f"{settings.contract.base_uri}/services/{SID}/tasks/requests/{quote(key, safe='')}"
        )
        assert accepted.json()["state"] == "pending"
        assert accepted.json()["event_id"] == key
        pending = await client.get(status_url)
        assert (pending.status_code, pending.json()["state"]) == (202, "pending")
        assert pending.headers["retry-after"] == "1"

        stopping = asyncio.Event()
        consumer = asyncio.create_task(run_consumer(settings, stopping))
        try:
            async with asyncio.timeout(30):
                while (resolved := await client.get(status_url)).status_code == 202:
                    await asyncio.sleep(0.1)
            assert resolved.status_code == 303, resolved.text
            task_id = resolved.json()["task_id"]
            assert resolved.headers["location"] == settings.contract.location(SID, task_id)
            task = await client.get(resolved.headers["location"])
            assert task.json()["state_id"] == 7

            retried = await client.post(start_url(), content=b'{"state_id": 7}', headers=headers)
            assert (retried.status_code, retried.json()) == (201, {"task_id": task_id})
            assert len(running.bridge.pending) == 0  # the late reply was dropped harmlessly
            elsewhere = STATUS_PATH.replace("{event_id:path}", quote(key, safe=""))
            assert_error_body(await client.get(elsewhere.format(service_id=SID + 1)), 404)
        finally:
            stopping.set()
            await consumer


async def test_with_accept_on_timeout_off_no_reply_in_time_is_a_504(
    settings: StackSettings,
) -> None:
    strict = bridge_settings(settings, bridge_reply_timeout_ms=200, bridge_accept_on_timeout=False)
    async with running_bridge(strict) as running:
        response = await running.client.post(start_url(), content=b"{}", headers=JSON_HEADERS)
        assert "Idempotency-Key" in assert_error_body(response, 504)["message"]


async def test_a_request_the_consumer_rejects_gets_its_reply_status_and_error_body(
    settings: StackSettings, consumer: object
) -> None:
    # The bridge allows longer strings than the consumer: only the consumer refuses this one.
    lenient = bridge_settings(settings, max_string_length=5000)
    key = uuid.uuid4().hex
    headers = {**JSON_HEADERS, "Idempotency-Key": key}
    body = orjson.dumps({"session_id": "s" * 2000})
    async with running_bridge(lenient) as running:
        rejected = await running.client.post(start_url(), content=body, headers=headers)
        error = assert_error_body(rejected, 400)
        assert [e["field"] for e in error["errors"]] == ["session_id"]
        status_url = rejected.request.url.path.replace("/start", f"/requests/{key}")
        status = await running.client.get(status_url)
        assert assert_error_body(status, 400) == error


# --- the 8.0/8.1 paths and real clients' Content-Type

UTF8_JSON_TYPES = (
    "application/json;charset=UTF-8",  # what Context Services clients send
    "application/json; charset=utf-8",
    'application/json;charset="UTF-8"',
    "APPLICATION/JSON;CHARSET=UTF-8",
)


async def test_json_declared_utf8_however_written_starts_a_task(
    settings: StackSettings, consumer: object
) -> None:
    async with running_bridge(bridge_settings(settings)) as running:
        for content_type in UTF8_JSON_TYPES:
            created = await running.client.post(
                start_url(), content=REFERENCE_BODY, headers={"Content-Type": content_type}
            )
            assert created.status_code == 201, (content_type, created.text)


async def test_the_8_0_paths_start_read_and_report_as_the_8_5_paths_do(
    settings: StackSettings, consumer: object
) -> None:
    key = f"legacy-{uuid.uuid4().hex}"
    headers = {"Content-Type": "application/json;charset=UTF-8", "Idempotency-Key": key}
    async with running_bridge(bridge_settings(settings)) as running:
        client = running.client
        created = await client.post(
            f"/services/{SID}/tasks/start", content=REFERENCE_BODY, headers=headers
        )
        assert created.status_code == 201, created.text
        task_id = created.json()["task_id"]
        assert created.headers["location"] == settings.contract.location(SID, task_id)
        reads = [
            await client.get(path, params={"extensions": "*"})
            for path in (
                f"/services/{SID}/tasks/{task_id}",
                f"/service/{SID}/tasks/{task_id}",
                f"/genesys/1/cs/services/{SID}/tasks/{task_id}",
            )
        ]
        assert [r.status_code for r in reads] == [200, 200, 200]
        assert reads[0].content == reads[1].content == reads[2].content
        assert {k: reads[0].json()[k] for k in REFERENCE_ATTACHED} == REFERENCE_ATTACHED

        status = await client.get(f"/services/{SID}/tasks/requests/{key}")
        assert (status.status_code, status.json()["task_id"]) == (303, task_id)
        again = await client.post(
            f"/genesys/1/cs/services/{SID}/tasks/start", content=REFERENCE_BODY, headers=headers
        )
        assert again.json() == {"task_id": task_id}  # one identity, whichever path
        assert_error_body(await client.get(f"/services/abc/tasks/{task_id}"), 400)
        assert_error_body(await client.get(f"/services/{SID}/tasks/start"), 405)
        assert_error_body(await client.get(f"/services/{SID}/tasks/requests/%00"), 400)


async def test_with_legacy_paths_off_only_the_8_5_paths_are_served(settings: StackSettings) -> None:
    off = bridge_settings(settings, bridge_legacy_paths=False, bridge_reply_timeout_ms=100)
    async with running_bridge(off) as running:
        legacy = await running.client.post(f"/services/{SID}/tasks/start", content=b"{}")
        assert_error_body(legacy, 404)
        assert (await running.client.post(start_url(), content=b"{}")).status_code == 202
        paths = running.app.openapi()["paths"]
        assert not [path for path in paths if path.startswith("/service")]


# --- replies are matched on correlation id and identity


async def published_requests(
    settings: StackSettings, *event_ids: str
) -> dict[str, dict[str, bytes]]:
    """The headers of the request records with these event ids, once the bridge published all."""
    consumer = AIOKafkaConsumer(**settings.kafka.client_options(), auto_offset_reset="earliest")
    await consumer.start()
    found: dict[str, dict[str, bytes]] = {}
    try:
        topic = settings.topics.requests
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        async with asyncio.timeout(20):
            async for record in consumer:
                headers = dict(record.headers)
                if (event_id := headers.get("ce_id", b"").decode()) in event_ids:
                    found[event_id] = headers
                    if len(found) == len(event_ids):
                        return found
    finally:
        await consumer.stop()
    raise AssertionError("unreachable")


async def published_request(settings: StackSettings, event_id: str) -> dict[str, bytes]:
    """The headers of the request record with this event id, once the bridge published it."""
    return (await published_requests(settings, event_id))[event_id]


async def published_ids(settings: StackSettings) -> set[str]:
    """The event ids of every request on the requests topic now (read up to its end)."""
    consumer = AIOKafkaConsumer(**settings.kafka.client_options(), auto_offset_reset="earliest")
    await consumer.start()
    ids: set[str] = set()
    try:
        topic = settings.topics.requests
        assigned = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        for tp in assigned:
            while await consumer.position(tp) < ends[tp]:
                for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                    ids.add(dict(record.headers).get("ce_id", b"").decode())
    finally:
        await consumer.stop()
    return ids


def forged_created(
    correlation_id: str, answers: EventRef, task_id: int, payload: dict[str, Any] | None = None
) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """A task-created reply record with this correlation id, answering `answers`."""
    body = payload or {
        "kind": "task.created",
        "task_id": task_id,
        "service_id": SID,
        "location": f"http://testserver/genesys/1/cs/service/{SID}/tasks/{task_id}",
        "event": answers.model_dump(),
    }
    return wire.encode_reply(
        reply_type=wire.TYPE_TASK_CREATED,
        payload=body,
        service_id=SID,
        request_source=answers.source,
        request_id=answers.id,
        correlation_id=correlation_id,
        time="2026-01-01T00:00:00.000Z",
    )


async def test_a_reply_with_the_requests_correlation_id_but_another_identity_never_answers_it(
    settings: StackSettings,
) -> None:
    key = f"genuine-{uuid.uuid4().hex}"
    headers = {**JSON_HEADERS, "Idempotency-Key": key}
    waiting = bridge_settings(settings, bridge_reply_timeout_ms=20_000)  # no consumer runs
    async with running_bridge(waiting) as running:
        post = running.client.post(start_url(), content=b'{"state_id": 1}', headers=headers)
        answer = asyncio.create_task(post)
        request = await published_request(settings, key)
        correlation_id = request["ce_correlationid"].decode()
        assert request["ce_replyto"].decode() == running.bridge.link.reply_topic
        genuine = EventRef(source=BRIDGE_SOURCE, id=key)
        forged = [
            forged_created(correlation_id, EventRef(source=BRIDGE_SOURCE, id="another"), 111),
            forged_created(correlation_id, EventRef(source="urn:forger", id=key), 222),
            # unreadable, and for another event: dropped, not a 502 for this request
            forged_created(correlation_id, genuine, 0, {"event": {"source": "x", "id": "y"}}),
        ]
        producer = AIOKafkaProducer(**settings.kafka.client_options(), enable_idempotence=False)
        await producer.start()
        try:
            for record_key, value, record_headers in forged:  # one partition: read in order
                await producer.send_and_wait(
                    running.bridge.link.reply_topic, value, key=record_key, headers=record_headers
                )
            assert not answer.done()
            record_key, value, record_headers = forged_created(correlation_id, genuine, 333)
            await producer.send_and_wait(
                running.bridge.link.reply_topic, value, key=record_key, headers=record_headers
            )
        finally:
            await producer.stop()
        response = await answer
        assert (response.status_code, response.json()) == (201, {"task_id": 333})
        assert len(running.bridge.pending) == 0


async def test_an_unreadable_reply_to_the_request_is_a_502_without_its_text(
    settings: StackSettings,
) -> None:
    key = f"unreadable-{uuid.uuid4().hex}"
    headers = {**JSON_HEADERS, "Idempotency-Key": key}
    waiting = bridge_settings(settings, bridge_reply_timeout_ms=20_000)  # no consumer runs
    async with running_bridge(waiting) as running:
        post = running.client.post(start_url(), content=b"{}", headers=headers)
        answer = asyncio.create_task(post)
        request = await published_request(settings, key)
        identity = EventRef(source=BRIDGE_SOURCE, id=key)
        broken = {"kind": "task.created", "task_id": "not a number", "event": identity.model_dump()}
        record_key, value, record_headers = forged_created(
            request["ce_correlationid"].decode(), identity, 0, broken
        )
        producer = AIOKafkaProducer(**settings.kafka.client_options(), enable_idempotence=False)
        await producer.start()
        try:
            await producer.send_and_wait(
                running.bridge.link.reply_topic, value, key=record_key, headers=record_headers
            )
        finally:
            await producer.stop()
        response = await answer
        body = assert_error_body(response, 502)
        assert body["message"] == "The task service sent a reply the bridge cannot read."
        assert_no_internal_text(response)


# --- bad input: every error class, answered before anything is published


@pytest.fixture(scope="module")
async def edge(kafka_bootstrap: str, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """One bridge for the bad-input cases (no consumer: accepted requests answer 202)."""
    settings = make_settings(kafka_bootstrap, database_url)
    await create_topics(settings)
    small = bridge_settings(settings, max_body_bytes=4096, bridge_reply_timeout_ms=100)
    async with running_bridge(small) as running:
        yield running.client


@dataclass(frozen=True)
class Bad:
    """One bad request and what its error body must say."""

    method: str
    path: str
    status: int
    says: str
    field: str | None = None
    headers: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(JSON_HEADERS))
    body: bytes | None = b"{}"


def _post(body: bytes, status: int, says: str, field: str | None = "", **kw: Any) -> Bad:
    return Bad("POST", kw.pop("path", start_url()), status, says, field, body=body, **kw)


def _typed(content_type: str, says: str) -> Bad:
    return _post(b"{}", 415, says, "Content-Type", headers={"Content-Type": content_type})


def _keyed(key: str | bytes, says: str) -> Bad:
    headers = {**JSON_HEADERS, "Idempotency-Key": key}
    return _post(b"{}", 400, says, "Idempotency-Key", headers=headers)


def _get(path: str, status: int, says: str, field: str | None = None) -> Bad:
    return Bad("GET", path, status, says, field, headers={}, body=None)


SYNTAX_FIXED = (
    REFERENCE_BODY_VERBATIM.replace(b":customer info", b':"customer info"')
    .replace(b"25 000", b"25000")
    .replace(b"70 000", b"70000")
)
STREAMED = b"<streamed>"  # stands for a chunked body larger than the limit
TASK = f"/genesys/1/cs/service/{SID}/tasks"
REQUESTS = "/genesys/1/cs/services/{}/tasks/requests/{}"

BAD_INPUT = {
    "verbatim reference": _post(REFERENCE_BODY_VERBATIM, 400, "`customer`"),
    "float for a string": _post(
        b'{"interaction_id": 4.2}', 400, "interaction_id", "interaction_id"
    ),
    "empty body": _post(b"", 400, "empty"),
    "not an object": _post(b"[1, 2]", 400, "JSON object"),
    "wrong type": _post(b'{"state_id": "x"}', 400, "JSON integer", "state_id"),
    "out of range": _post(b'{"state_id": 2147483648}', 400, "between", "state_id"),
    "negative duration": _post(b'{"est_duration": -1}', 400, "est_duration", "est_duration"),
    "reserved key": _post(b'{"task_id": 5}', 400, "reserved", "task_id"),
    "service id zero": _post(b"{}", 400, "service_id", "service_id", path=start_url(0)),
    "service id text": _post(b"{}", 400, "service_id", "service_id", path=start_url("abc")),
    "service id 2^63": _post(b"{}", 400, "service_id", "service_id", path=start_url(2**63)),
    "service id and body": _post(
        b'{"state_id": true}', 400, "state_id", "service_id", path=start_url(-1)
    ),
    "declared too large": _post(b"{" + b" " * 5000 + b"}", 413, "Content-Length is 5002"),
    "streamed too large": _post(STREAMED, 413, "more than 4096"),
    "text/plain": _typed("text/plain", "text/plain"),
    "form": _typed("application/x-www-form-urlencoded", "application/json"),
    "latin-1": _typed("application/json; charset=latin-1", "UTF-8"),
    "ISO-8859-1": _typed("application/json;charset=ISO-8859-1", "UTF-8"),
    "UTF-16": _typed("application/json;charset=UTF-16", "UTF-8"),
    "US-ASCII": _typed('application/json;charset="US-ASCII"', "UTF-8"),
    "structured CloudEvent": _typed("application/cloudevents+json", "structured"),
    "key too long": _keyed("k" * 257, "256"),
    "key not ASCII": _keyed("caf\u00e9".encode(), "printable"),
    "key empty": _keyed("", "empty"),
    "unknown path": _get("/genesys/1/cs/nothing", 404, "/genesys/1/cs/nothing"),
    "unknown task path": _get(f"/genesys/1/cs/services/{SID}/tasks/latest", 404, "no resource"),
    "trailing slash": _post(b"{}", 404, "no resource", None, path=start_url() + "/"),
    "GET on start": _get(start_url(), 405, "allowed: POST"),
    "DELETE a task": Bad("DELETE", f"{TASK}/1", 405, "allowed: GET", headers={}, body=None),
    "POST on healthz": _post(b"{}", 405, "allowed: GET", None, path="/healthz"),
    "status, bad service": _get(REQUESTS.format("x", "e"), 400, "service_id", "service_id"),
    "status, id too long": _get(REQUESTS.format(1, "e" * 257), 400, "event_id", "event_id"),
    "status, NUL id": _get(REQUESTS.format(1, "%00"), 400, "event_id", "event_id"),
    "status, control character": _get(REQUESTS.format(1, "a%1Fb"), 400, "event_id", "event_id"),
    "status, invalid UTF-8": _get(REQUESTS.format(1, "%FF%FE"), 400, "event_id", "event_id"),
    "status, truncated UTF-8": _get(REQUESTS.format(1, "caf%C3"), 400, "event_id", "event_id"),
    "status, not ASCII": _get(REQUESTS.format(1, "caf%C3%A9"), 400, "event_id", "event_id"),
    "status, NUL service": _get(REQUESTS.format("%00", "e"), 400, "service_id", "service_id"),
    "task, NUL service": _get("/genesys/1/cs/service/%00/tasks/1", 400, "service_id"),
    "unknown task": _get(f"{TASK}/2147483647", 404, "no task"),
    "task id beyond 32 bits": _get(f"{TASK}/{2**40}", 404, "no task"),
    "task, bad service": _get("/genesys/1/cs/service/abc/tasks/1", 400, "service_id"),
}


async def _chunked(size: int) -> AsyncIterator[bytes]:
    yield b'{"blob": "'
    for _ in range(size // 1000 + 1):
        yield b"x" * 1000
    yield b'"}'


@pytest.mark.parametrize("bad", BAD_INPUT.values(), ids=BAD_INPUT.keys())
async def test_bad_input_gets_the_json_error_body_with_the_right_status(
    edge: httpx.AsyncClient, bad: Bad
) -> None:
    content = _chunked(4096) if bad.body is STREAMED else bad.body
    response = await edge.request(bad.method, bad.path, headers=bad.headers, content=content)
    error = assert_error_body(response, bad.status)
    assert bad.says in error["message"]
    if bad.field:
        assert bad.field in [e["field"] for e in error["errors"]]
    if bad.status == 405:
        assert response.headers["allow"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Content-Type": "application/vnd.genesys.task+json; charset=UTF-8"}],
    ids=["no content type", "+json"],
)
async def test_json_declared_otherwise_or_undeclared_is_accepted(
    edge: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await edge.post(start_url(), content=b'{"state_id": 1}', headers=headers)
    assert response.status_code == 202  # accepted and published; no consumer runs here


# --- outages


async def test_with_the_broker_unreachable_requests_get_503_at_once_and_readyz_says_why(
    settings: StackSettings,
) -> None:
    nowhere = bridge_settings(settings, kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    started = time.monotonic()
    async with running_bridge(nowhere) as running:
        assert time.monotonic() - started < 5
        client = running.client
        assert (await client.get("/healthz")).json() == {"status": "alive"}
        began = time.monotonic()
        response = await client.post(start_url(), content=b"{}", headers=JSON_HEADERS)
        assert time.monotonic() - began < 0.5
        assert assert_error_body(response, 503)["message"] == BROKER_UNAVAILABLE
        assert response.headers["retry-after"] == "1"
        ready = assert_error_body(await client.get("/readyz"), 503)
        assert ready["errors"] == [{"field": "kafka", "problem": "cannot connect to the broker"}]
        assert_no_internal_text(response, await client.get("/readyz"))


async def test_when_the_broker_stops_requests_get_503_quickly_and_the_bridge_recovers_after(
    database_url: str, tmp_path: Path
) -> None:
    async with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        settings = make_settings(broker.bootstrap_servers, database_url)
        await create_topics(settings)
        fast = bridge_settings(settings, bridge_reply_timeout_ms=100, bridge_send_timeout_ms=1000)
        async with running_bridge(fast) as running:
            client = running.client
            assert (await client.get("/readyz")).status_code == 200
            published = await client.post(start_url(), content=b"{}", headers=JSON_HEADERS)
            assert published.status_code == 202  # no consumer: published, not answered
            await broker.stop()
            began = time.monotonic()  # at most the send timeout (1 s) ...
            assert_error_body(await client.post(start_url(), content=b"{}"), 503)
            assert time.monotonic() - began < 2.5
            async with asyncio.timeout(3):  # ... and the probe soon knows the broker is gone
                while (await client.get("/readyz")).status_code != 503:
                    await asyncio.sleep(0.05)
            began = time.monotonic()  # from then on, at once
            assert_error_body(await client.post(start_url(), content=b"{}"), 503)
            assert time.monotonic() - began < 0.5

            await broker.start()  # same port, empty storage: the link rebuilds itself
            await create_topics(settings)
            async with asyncio.timeout(15):
                while (await client.get("/readyz")).status_code != 200:
                    await asyncio.sleep(0.1)
                # tansu may refuse the first sends to a topic it just recreated (UnknownError)
                while (again := await client.post(start_url(), content=b"{}")).status_code != 202:
                    assert again.status_code == 503, again.text
                    await asyncio.sleep(0.1)


async def test_with_the_database_unreachable_reads_answer_503(settings: StackSettings) -> None:
    nowhere = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/ucs"
    async with running_bridge(bridge_settings(settings, database_url=nowhere)) as running:
        client = running.client
        task = await client.get(f"/genesys/1/cs/service/{SID}/tasks/1")
        status = await client.get(f"/genesys/1/cs/services/{SID}/tasks/requests/x")
        for response in (task, status):
            assert assert_error_body(response, 503)["message"] == DATABASE_UNAVAILABLE
            assert response.headers["retry-after"] == "1"
        ready = await client.get("/readyz")
        assert assert_error_body(ready, 503)["errors"] == [
            {"field": "postgresql", "problem": DATABASE_NOT_READY}
        ]
        assert_no_internal_text(task, status, ready)


async def test_with_both_down_readyz_names_both_and_healthz_still_answers(
    settings: StackSettings,
) -> None:
    down = bridge_settings(
        settings,
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/ucs",
    )
    async with running_bridge(down) as running:
        ready = await running.client.get("/readyz")
        body = assert_error_body(ready, 503)
        assert [e["field"] for e in body["errors"]] == ["kafka", "postgresql"]
        assert body["message"].startswith("Not ready: kafka: cannot connect to the broker; ")
        assert_no_internal_text(ready)
        assert (await running.client.get("/healthz")).status_code == 200


# --- lifecycle and safety nets


async def test_an_unexpected_failure_still_answers_a_json_500() -> None:
    app = create_app(StackSettings.of())  # its lifespan never runs: the routes fail loudly
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post(start_url(), content=b"{}", headers=JSON_HEADERS)
    assert "Internal error" in assert_error_body(response, 500)["message"]


async def test_a_bridge_whose_requests_topic_is_missing_answers_503_and_creates_nothing(
    settings: StackSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded broker creates any topic a client asks about, with its own defaults: a
    bridge started before its requests topic exists (or after a broker restart, before it is
    re-created) would write requests into a topic nobody set up. It asks for no creation (the
    session installed that for every client: undone here, so the bridge's own start does it)."""
    monkeypatch.setattr(aiokafka_client, "MetadataRequest", MetadataRequest)
    missing = f"missing-requests-{uuid.uuid4().hex[:8]}"
    mine = bridge_settings(settings, topic_requests=missing, bridge_send_timeout_ms=1000)
    async with running_bridge(mine) as running:
        response = await running.client.post(
            start_url(), content=b'{"state_id": 1}', headers=JSON_HEADERS
        )
    assert_error_body(response, 503)
    assert missing not in await topic_names(settings)


async def test_the_kafka_link_refuses_use_before_start(settings: StackSettings) -> None:
    link = KafkaLink(bridge_settings(settings), PendingReplies())
    with pytest.raises(RuntimeError, match="before start"):
        await link.publish(
            TaskRequest(EventKind.START, 1, b"{}"), EventRef(source="s", id="e"), correlation_id="c"
        )
    await link.stop()  # idempotent, even unstarted


def test_the_openapi_document_declares_every_status_the_bridge_answers() -> None:
    document = create_app(StackSettings.of()).openapi()
    paths = document["paths"]
    start = paths[start_url("{service_id}")]["post"]
    assert {"201", "202", "400", "413", "415", "503", "504"} <= set(start["responses"])
    assert "Location" in start["responses"]["201"]["headers"]
    assert "Location" in start["responses"]["202"]["headers"]
    assert start["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/TaskStartEvent"
    )
    assert "Idempotency-Key" in [p["name"] for p in start["parameters"]]
    status = paths["/genesys/1/cs/services/{service_id}/tasks/requests/{event_id}"]["get"]
    assert {"202", "303", "400", "404", "503"} <= set(status["responses"])
    assert "Location" in status["responses"]["303"]["headers"]
    for path in TASK_PATHS:
        read = paths[path.replace(":int", "")]["get"]
        assert {"200", "400", "404", "503"} <= set(read["responses"])
    end = paths[END_PATH]["post"]
    assert {"202", "204", "400", "404", "409", "413", "415", "422", "503", "504"} <= set(
        end["responses"]
    )
    assert end["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/TaskEndEvent"
    )
    update = paths[EXTENSION_PATH.replace(":path", "")]["put"]
    assert {"200", "202", "400", "404", "413", "415", "422", "503", "504"} <= set(
        update["responses"]
    )
    assert update["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/TaskExtensionValue"
    )
    for path in QUERY_PATHS.values():
        query = paths[path]["get"]
        assert {"200", "400", "503"} <= set(query["responses"])
        named = {p["name"] for p in query["parameters"]}
        assert {"state_id", "task_types", "extensions", "limit", "after"} <= named
    for operations in (paths[p] for p in paths if p.startswith("/genesys/1/cs/")):
        for operation in operations.values():  # every task operation names the tenant headers
            assert {"ContactCenterId", "GroupId"} <= {p["name"] for p in operation["parameters"]}
    assert {"200", "503"} <= set(paths["/readyz"]["get"]["responses"])
    served = [path for path in paths if path.startswith("/genesys/1/cs/")]
    assert len(served) == 9
    for path in served:  # each in its 8.0/8.1 form too, documented alike
        legacy = paths[path.removeprefix("/genesys/1/cs")]
        assert legacy.keys() == paths[path].keys()
        for method, operation in legacy.items():
            assert operation["responses"] == paths[path][method]["responses"]
            assert operation["operationId"] == "legacy_" + paths[path][method]["operationId"]
    shared = document["components"]["responses"]
    assert "Allow" in shared["MethodNotAllowed"]["headers"]
    assert {"NotFound", "RequestTimeout", "URITooLong", "HeaderFieldsTooLarge"} <= set(shared)
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for operations in paths.values():
        for operation in operations.values():
            for code, response in operation["responses"].items():
                if code.startswith(("4", "5")):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema["$ref"].endswith("/ErrorBody"), (code, response)
