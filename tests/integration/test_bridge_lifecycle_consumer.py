"""A task's whole life over HTTP, against the real broker, PostgreSQL and consumer: Complete Task
(204) and Update Task Extension (200) bridged like Start Task, read back by Query Task by ID and
Query Tasks; each rejection's status; replays; the 202 fallback; tenants end to end.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import orjson

from consumer.bootstrap import run_consumer
from producer_tools.bridge.routes import QUERY_PATHS
from tests.integration.test_bridge import assert_error_body, bridge_settings, running_bridge
from tests.integration.test_bridge_lifecycle import (
    END_BODY,
    ENDED,
    ROOT,
    SERVICE,
    http,
    keyed,
    started_task,
)
from tests.servers import StackSettings

__all__ = ["http"]  # the module fixture, shared


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
