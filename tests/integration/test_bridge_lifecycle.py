"""Complete Task and Update Task Extension over HTTP against the real broker and PostgreSQL:
change requests refused before anything is published, published ones answered 202 without a
consumer, and a key used for a start refused (422) for a change with the real consumer.

The whole life of a task against the real consumer: test_bridge_lifecycle_consumer.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

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
