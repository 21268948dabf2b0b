"""A task's whole life over HTTP, against the real broker, PostgreSQL and consumer: Complete Task
(204) and Update Task Extension (200) bridged like Start Task, read back by Query Task by ID and
Query Tasks; each rejection's status; replays; the 202 fallback; tenants end to end.

The bad-input cases at the end need no consumer: they are refused before anything is published.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from consumer.bootstrap import run_consumer
from producer_tools.bridge.routes import QUERY_PATHS
from tests.integration.test_bridge import (
    JSON_HEADERS,
    assert_error_body,
    bridge_settings,
    published_ids,
    running_bridge,
)
from tests.reference import REFERENCE_BODY
from tests.servers import StackSettings, create_topics, make_settings

SERVICE = 21456878
STARTED = "2026-01-31T12:00:00.123Z"
ENDED = "2026-01-31T12:01:30.128Z"  # 90,005 ms later
ROOT = f"/genesys/1/cs/services/{SERVICE}/tasks"


@pytest.fixture(scope="module")
async def http(
    module_settings: StackSettings, module_consumer: object
) -> AsyncIterator[httpx.AsyncClient]:
    """One bridge and one consumer for the module (a group join costs seconds)."""
    async with running_bridge(bridge_settings(module_settings)) as running:
        yield running.client


def keyed(key: str | None = None, **headers: str) -> dict[str, str]:
    return {**JSON_HEADERS, "Idempotency-Key": key or uuid.uuid4().hex, **headers}


async def started_task(
    http: httpx.AsyncClient, body: bytes = REFERENCE_BODY, **headers: str
) -> int:
    """A new task's id (its start timestamp is STARTED unless the body says otherwise)."""
    if body is REFERENCE_BODY:
        body = orjson.dumps(orjson.loads(body) | {"timestamp": STARTED})
    created = await http.post(f"{ROOT}/start", content=body, headers=keyed(**headers))
    assert created.status_code == 201, created.text
    task_id: int = created.json()["task_id"]
    return task_id


END_BODY = orjson.dumps(
    {
        "disposition": "resolved",
        "disposition_desc": "customer satisfied",
        "timestamp": ENDED,
        "media_type": "email",
        "Score": {"z": 9, "a": 1},
    }
)


async def test_start_end_and_update_then_the_task_reads_and_lists_completed(
    http: httpx.AsyncClient,
) -> None:
    task_id = await started_task(http)
    ended = await http.post(f"{ROOT}/{task_id}/end", content=END_BODY, headers=keyed())
    assert (ended.status_code, ended.content) == (204, b""), ended.text
    value = b'[{"car type": "coupe", "seats": 2}, {"car type": "van", "seats": 9}]'
    updated = await http.put(
        f"{ROOT}/{task_id}/extensions/Proposal", content=value, headers=keyed()
    )
    assert updated.status_code == 200, updated.text
    assert updated.json() == orjson.loads(value)

    read = await http.get(f"{ROOT}/{task_id}", params={"extensions": "Proposal,Survey"})
    document = orjson.loads(read.content)
    assert document["completed"] == {
        "timestamp": ENDED,
        "media_type": "email",
        "Score": {"z": 9, "a": 1},
    }
    assert (document["duration"], document["disposition"], document["disposition_desc"]) == (
        90_005,
        "resolved",
        "customer satisfied",
    )
    assert document["Proposal"] == orjson.loads(value)
    assert list(document["Proposal"][0]) == ["car type", "seats"]
    assert document["Survey"]["question1"] == 7  # the other attached data untouched

    completed = await http.get(
        QUERY_PATHS["completed"].format(service_id=SERVICE),
        params={"task_types": "customer info", "after": str(task_id - 1), "limit": "1"},
    )
    assert [t["task_id"] for t in completed.json()] == [task_id]
    assert completed.json()[0]["completed"] == document["completed"]
    active = await http.get(
        QUERY_PATHS["active"].format(service_id=SERVICE), params={"after": str(task_id - 1)}
    )
    assert task_id not in [t["task_id"] for t in active.json()]


async def test_a_replayed_end_answers_204_again_and_a_new_one_is_a_409(
    http: httpx.AsyncClient,
) -> None:
    task_id = await started_task(http)
    key = f"end-{uuid.uuid4().hex}"
    first = await http.post(f"{ROOT}/{task_id}/end", content=END_BODY, headers=keyed(key))
    again = await http.post(f"{ROOT}/{task_id}/end", content=END_BODY, headers=keyed(key))
    assert (first.status_code, again.status_code) == (204, 204)
    other = await http.post(f"{ROOT}/{task_id}/end", content=b"{}", headers=keyed())
    assert assert_error_body(other, 409)
    read = await http.get(f"{ROOT}/{task_id}")
    assert read.json()["disposition"] == "resolved"  # the first completion stands


async def test_an_extension_update_replaces_the_whole_value_and_a_replay_answers_the_same(
    http: httpx.AsyncClient,
) -> None:
    task_id = await started_task(http)
    key = f"ext-{uuid.uuid4().hex}"
    url = f"{ROOT}/{task_id}/extensions/Survey"
    first = await http.put(url, content=b'{"only": "this"}', headers=keyed(key))
    replay = await http.put(url, content=b'{"other": "body"}', headers=keyed(key))
    assert (first.status_code, first.json()) == (200, {"only": "this"})
    assert (replay.status_code, replay.json()) == (200, {"only": "this"})
    read = await http.get(f"{ROOT}/{task_id}", params={"extensions": "*"})
    assert read.json()["Survey"] == {"only": "this"}
    assert list(read.json())[-2:] == ["Survey", "Proposal"]  # the key keeps its place


async def test_each_refused_change_gets_its_status(http: httpx.AsyncClient) -> None:
    task_id = await started_task(http)
    other_service = f"/genesys/1/cs/services/{SERVICE + 1}/tasks/{task_id}"
    for method, path, body, status in [
        ("POST", f"{ROOT}/2147483647/end", b"{}", 404),
        ("PUT", f"{ROOT}/2147483647/extensions/Survey", b"{}", 404),
        ("POST", f"{other_service}/end", b"{}", 404),
        ("PUT", f"{other_service}/extensions/Survey", b"{}", 404),
        ("POST", f"{ROOT}/{task_id}/end", b'{"timestamp": "2026-01-31T11:59:59.000Z"}', 400),
    ]:
        response = await http.request(method, path, content=body, headers=keyed())
        assert assert_error_body(response, status), (method, path)
    assert "completed" not in (await http.get(f"{ROOT}/{task_id}")).json()


async def test_a_key_used_for_one_request_is_a_422_for_another(http: httpx.AsyncClient) -> None:
    task_id = await started_task(http)
    key = f"start-{uuid.uuid4().hex}"
    created = await http.post(f"{ROOT}/start", content=b"{}", headers=keyed(key))
    assert created.status_code == 201
    for method, path in (
        ("POST", f"{ROOT}/{task_id}/end"),
        ("PUT", f"{ROOT}/{task_id}/extensions/Survey"),
    ):
        reused = await http.request(method, path, content=b"{}", headers=keyed(key))
        assert "a Start Task request" in assert_error_body(reused, 422)["message"]
    assert "completed" not in (await http.get(f"{ROOT}/{task_id}")).json()


async def test_an_end_without_a_reply_in_time_gets_a_202_whose_status_resolves_to_the_task(
    settings: StackSettings,
) -> None:
    key = f"slow-end-{uuid.uuid4().hex}"
    stopping = asyncio.Event()
    consumer = asyncio.create_task(run_consumer(settings, stopping))
    try:
        async with running_bridge(bridge_settings(settings)) as running:
            task_id = await started_task(running.client)
        async with running_bridge(bridge_settings(settings, bridge_reply_timeout_ms=1)) as slow:
            accepted = await slow.client.post(
                f"{ROOT}/{task_id}/end", content=END_BODY, headers=keyed(key)
            )
            assert accepted.status_code == 202, accepted.text
            status_url = accepted.headers["location"]
            async with asyncio.timeout(30):
                while (resolved := await slow.client.get(status_url)).status_code == 202:
                    await asyncio.sleep(0.1)
            assert resolved.status_code == 303, resolved.text
            assert (resolved.json()["state"], resolved.json()["task_id"]) == ("completed", task_id)
            assert resolved.headers["location"] == settings.contract.location(SERVICE, task_id)
    finally:
        stopping.set()
        await consumer


async def test_two_tenants_on_one_stack_cannot_see_or_change_each_other_s_tasks(
    settings: StackSettings,
) -> None:
    tenants = settings.with_(tenants="acme,globex")
    acme, globex = {"ContactCenterId": "acme"}, {"ContactCenterId": "globex"}
    stopping = asyncio.Event()
    consumer = asyncio.create_task(run_consumer(tenants, stopping))
    try:
        async with running_bridge(bridge_settings(tenants)) as running:
            client = running.client
            task_id = await started_task(client, ContactCenterId="acme", GroupId="sales")
            for method, path, body in (
                ("GET", f"{ROOT}/{task_id}", None),
                ("POST", f"{ROOT}/{task_id}/end", END_BODY),
                ("PUT", f"{ROOT}/{task_id}/extensions/Survey", b"{}"),
            ):
                refused = await client.request(method, path, content=body, headers=keyed(**globex))
                assert_error_body(refused, 404)
            listed = await client.get(QUERY_PATHS["all"].format(service_id=SERVICE), headers=globex)
            assert task_id not in [t["task_id"] for t in listed.json()]
            ended = await client.post(
                f"{ROOT}/{task_id}/end", content=END_BODY, headers=keyed(**acme)
            )
            assert ended.status_code == 204, ended.text
            read = await client.get(f"{ROOT}/{task_id}", headers=acme)
            assert read.json()["disposition"] == "resolved"
    finally:
        stopping.set()
        await consumer


# --- refused before anything is published (no consumer needed)


@pytest.fixture(scope="module")
async def edge(kafka_bootstrap: str, database_url: str) -> AsyncIterator[tuple[Any, ...]]:
    settings = make_settings(kafka_bootstrap, database_url)
    await create_topics(settings)
    small = bridge_settings(settings, max_body_bytes=4096, bridge_reply_timeout_ms=100)
    async with running_bridge(small) as running:
        yield running.client, settings


BAD_CHANGES = {
    "end, task id text": ("POST", f"{ROOT}/abc/end", b"{}", 400, "task_id"),
    "end, task id zero": ("POST", f"{ROOT}/0/end", b"{}", 400, "task_id"),
    "end, task id beyond 32 bits": ("POST", f"{ROOT}/2147483648/end", b"{}", 400, "task_id"),
    "end, long disposition_desc": (
        "POST",
        f"{ROOT}/1/end",
        orjson.dumps({"disposition_desc": "d" * 65}),
        400,
        "disposition_desc",
    ),
    "end, reserved key": ("POST", f"{ROOT}/1/end", b'{"est_duration": 5}', 400, "est_duration"),
    "end, not an object": ("POST", f"{ROOT}/1/end", b"[]", 400, ""),
    "end, null field": ("POST", f"{ROOT}/1/end", b'{"disposition": null}', 400, "disposition"),
    "end, bad service": ("POST", "/genesys/1/cs/services/0/tasks/1/end", b"{}", 400, "service_id"),
    "end, too large": ("POST", f"{ROOT}/1/end", b"{" + b" " * 5000 + b"}", 413, ""),
    "extension, reserved name": (
        "PUT",
        f"{ROOT}/1/extensions/task_id",
        b"{}",
        400,
        "extension_name",
    ),
    "extension, empty name": ("PUT", f"{ROOT}/1/extensions/", b"{}", 400, "extension_name"),
    "extension, control character": (
        "PUT",
        f"{ROOT}/1/extensions/a%01b",
        b"{}",
        400,
        "extension_name",
    ),
    "extension, name not UTF-8": ("PUT", f"{ROOT}/1/extensions/%FF", b"{}", 400, "extension_name"),
    "extension, a number": ("PUT", f"{ROOT}/1/extensions/Survey", b"7", 400, ""),
    "extension, array of numbers": ("PUT", f"{ROOT}/1/extensions/Survey", b"[1]", 400, "[0]"),
    "extension, malformed": ("PUT", f"{ROOT}/1/extensions/Survey", b"{", 400, ""),
    "extension, everything wrong": (
        "PUT",
        "/genesys/1/cs/services/x/tasks/y/extensions/",
        b"1",
        400,
        "service_id",
    ),
}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"), BAD_CHANGES.values(), ids=BAD_CHANGES.keys()
)
async def test_a_bad_change_request_is_refused_before_it_is_published(  # noqa: PLR0917 - cases
    edge: tuple[httpx.AsyncClient, StackSettings],
    method: str,
    path: str,
    body: bytes,
    status: int,
    field: str,
) -> None:
    client, settings = edge
    key = f"bad-{uuid.uuid4().hex}"
    response = await client.request(method, path, content=body, headers=keyed(key))
    error = assert_error_body(response, status)
    assert field in [e["field"] for e in error["errors"]]
    assert key not in await published_ids(settings)


async def test_a_valid_change_without_a_reply_in_time_is_published_and_answered_202(
    edge: tuple[httpx.AsyncClient, StackSettings],
) -> None:
    client, settings = edge
    for method, path, body in (
        ("POST", f"{ROOT}/1/end", END_BODY),
        ("PUT", f"{ROOT}/1/extensions/Pro%2Fposal", b"[]"),
    ):
        key = f"ok-{uuid.uuid4().hex}"
        accepted = await client.request(method, path, content=body, headers=keyed(key))
        assert accepted.status_code == 202, accepted.text
        assert accepted.headers["location"].endswith(f"/services/{SERVICE}/tasks/requests/{key}")
        assert key in await published_ids(settings)
