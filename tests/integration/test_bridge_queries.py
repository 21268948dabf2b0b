"""Query Tasks and Query Task by ID over HTTP against the real PostgreSQL: the three state paths,
each filter as a query parameter, paging, the representation of completed tasks, bad parameters.

Tasks are stored through the consumer's own repository (starts, ends and extension updates), so
these tests need no consumer: the bridge only reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from consumer.domain import Task
from producer_tools.bridge.routes import QUERY_PATHS, TASK_PATHS
from producer_tools.devstack.embedded import free_port
from tests.integration.test_bridge import assert_error_body, bridge_settings, running_bridge
from tests.integration.test_readside import applied
from tests.integration.test_repository import (
    START_AT,
    end,
    engine_for,
    extension,
    new_service,
    start,
    started,
)
from tests.servers import StackSettings, create_topics, make_settings

END_AT = START_AT + timedelta(seconds=90, milliseconds=5)


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async for built in engine_for(database_url):
        yield built


@pytest.fixture(scope="module")
async def http(kafka_bootstrap: str, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """One single-tenant bridge for the module (no consumer: it only reads here)."""
    settings = make_settings(kafka_bootstrap, database_url)
    await create_topics(settings)
    async with running_bridge(bridge_settings(settings, bridge_reply_timeout_ms=100)) as running:
        yield running.client


@pytest.fixture(scope="module")
async def seeded(engine: AsyncEngine) -> dict[str, Any]:
    """One service's tasks: types by id, by name and by a name of digits, states, completions."""
    service = new_service()
    specs: list[dict[str, Any]] = [
        {"task_type": 123, "state_id": 10},
        {"task_type": "123", "state_id": 10},  # a name written like an id
        {"task_type": "email", "state_id": -4},
        {"task_type": "chat", "state_id": 10},
        {"state_id": 20},
        {"task_type": "email"},
    ]
    tasks = await started(engine, *(start(service, **spec) for spec in specs))
    await applied(
        engine,
        end(
            tasks[0],
            timestamp=END_AT,
            disposition="resolved",
            disposition_desc="paid",
            state_id=11,
            attached={"Score": {"z": 9, "a": 1}},
        ),
        end(tasks[2], timestamp=END_AT, disposition=7),
        extension(tasks[3], "Proposal", [{"seats": 2}]),
    )
    other = await started(engine, start(new_service(), task_type=123))
    return {"service": service, "tasks": tasks, "completed": [0, 2], "other": other[0]}


def url(state: str, service: int) -> str:
    return QUERY_PATHS[state].format(service_id=service)


async def listed(http: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    response = await http.get(path, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    found: list[dict[str, Any]] = orjson.loads(response.content)
    return found


def ids(tasks: list[Task], *indices: int) -> list[int]:
    return [tasks[i].task_id for i in indices]


async def test_the_three_paths_list_all_active_and_completed_tasks_in_task_id_order(
    http: httpx.AsyncClient, seeded: dict[str, Any]
) -> None:
    service, tasks = seeded["service"], seeded["tasks"]
    everything = await listed(http, url("all", service))
    assert [t["task_id"] for t in everything] == ids(tasks, 0, 1, 2, 3, 4, 5)
    assert all(t["service_id"] == service for t in everything)
    active = await listed(http, url("active", service))
    assert [t["task_id"] for t in active] == ids(tasks, 1, 3, 4, 5)
    assert not any("completed" in t for t in active)
    completed = await listed(http, url("completed", service))
    assert [t["task_id"] for t in completed] == ids(tasks, 0, 2)
    assert all({"completed", "duration"} <= set(t) for t in completed)


async def test_a_completed_task_reads_back_with_its_end_event_duration_and_disposition(
    http: httpx.AsyncClient, seeded: dict[str, Any]
) -> None:
    task = seeded["tasks"][0]
    for path in TASK_PATHS:
        where = path.replace(":int", "").format(service_id=task.service_id, task_id=task.task_id)
        response = await http.get(where)
        document = orjson.loads(response.content)
        assert list(document) == [
            "task_id", "service_id", "state_id", "task_type", "started",
            "completed", "duration", "disposition", "disposition_desc",
        ]  # fmt: skip
        assert document["completed"] == {
            "timestamp": "2026-01-31T12:01:30.128Z",
            "state_id": 11,
            "Score": {"z": 9, "a": 1},
        }
        assert list(document["completed"]["Score"]) == ["z", "a"]
        assert (document["state_id"], document["duration"]) == (10, 90_005)
        assert (document["disposition"], document["disposition_desc"]) == ("resolved", "paid")
    [listed_task] = [
        t
        for t in await listed(http, url("completed", task.service_id))
        if t["task_id"] == task.task_id
    ]
    assert listed_task == document  # the same representation in a query


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({"state_id": "10"}, (0, 1, 3), id="a state"),
        pytest.param({"state_id": "-4"}, (2,), id="a negative state"),
        pytest.param({"task_types": "123"}, (0, 1), id="digits match the id and the name"),
        pytest.param({"task_types": "email,chat"}, (2, 3, 5), id="names"),
        pytest.param({"task_types": ["email", "123"]}, (0, 1, 2, 5), id="repeated parameter"),
        pytest.param({"task_types": ",email,,email"}, (2, 5), id="empty and repeated tokens"),
        pytest.param({"task_types": "Email"}, (), id="names are exact"),
        pytest.param({"task_types": "123", "state_id": "10"}, (0, 1), id="both filters"),
        pytest.param({"task_types": "nothing"}, (), id="no match: an empty array"),
    ],
)
async def test_filters_select_by_state_id_and_task_types(
    http: httpx.AsyncClient,
    seeded: dict[str, Any],
    params: dict[str, Any],
    expected: tuple[int, ...],
) -> None:
    found = await listed(http, url("all", seeded["service"]), **params)
    assert [t["task_id"] for t in found] == ids(seeded["tasks"], *expected)


async def test_filters_apply_within_the_active_and_completed_paths(
    http: httpx.AsyncClient, seeded: dict[str, Any]
) -> None:
    service, tasks = seeded["service"], seeded["tasks"]
    active = await listed(http, url("active", service), task_types="123,email")
    assert [t["task_id"] for t in active] == ids(tasks, 1, 5)
    completed = await listed(http, url("completed", service), state_id="10")
    assert [t["task_id"] for t in completed] == ids(tasks, 0)


async def test_pages_follow_each_other_with_limit_and_after(
    http: httpx.AsyncClient, seeded: dict[str, Any]
) -> None:
    service, tasks = seeded["service"], seeded["tasks"]
    pages: list[list[int]] = []
    after: int | None = None
    while True:
        params = {"limit": "4"} | ({} if after is None else {"after": str(after)})
        page = [t["task_id"] for t in await listed(http, url("all", service), **params)]
        if not page:
            break
        pages.append(page)
        after = page[-1]
    assert pages == [ids(tasks, 0, 1, 2, 3), ids(tasks, 4, 5)]
    assert await listed(http, url("all", service), after="0", limit="1") == (
        await listed(http, url("all", service), limit="1")
    )


async def test_extensions_choose_the_attached_data_each_listed_task_includes(
    http: httpx.AsyncClient, seeded: dict[str, Any]
) -> None:
    service = seeded["service"]
    bare = await listed(http, url("all", service))
    assert not any("Survey" in t or "Proposal" in t for t in bare)
    chosen = await listed(http, url("all", service), extensions="Proposal")
    with_proposal = [t["task_id"] for t in chosen if "Proposal" in t]
    assert with_proposal == ids(seeded["tasks"], 3)
    assert not any("Survey" in t for t in chosen)
    everything = await listed(http, url("active", service), extensions="*")
    assert all(t["Survey"] == {"q": 9} for t in everything)


async def test_another_service_s_tasks_are_never_listed(
    http: httpx.AsyncClient, seeded: dict[str, Any]
) -> None:
    other = seeded["other"]
    found = await listed(http, url("all", seeded["service"]), task_types="123")
    assert other.task_id not in [t["task_id"] for t in found]
    assert [t["task_id"] for t in await listed(http, url("all", other.service_id))] == [
        other.task_id
    ]


async def test_the_query_paths_are_not_task_ids_and_task_ids_still_read(
    http: httpx.AsyncClient, seeded: dict[str, Any]
) -> None:
    task = seeded["tasks"][1]
    read = await http.get(f"/genesys/1/cs/services/{task.service_id}/tasks/{task.task_id}")
    assert read.json()["task_id"] == task.task_id
    legacy = await listed(http, f"/services/{task.service_id}/tasks/active")  # 8.0/8.1 form
    assert task.task_id in [t["task_id"] for t in legacy]
    assert_error_body(await http.post(url("active", task.service_id)), 405)
    assert_error_body(await http.get(f"/genesys/1/cs/service/{task.service_id}/tasks"), 404)


BAD_PARAMETERS = {
    "limit 0": ({"limit": "0"}, ["limit"], "between 1 and 1000"),
    "limit 1001": ({"limit": "1001"}, ["limit"], "got '1001'"),
    "limit text": ({"limit": "ten"}, ["limit"], "got 'ten'"),
    "limit huge": ({"limit": "9" * 5000}, ["limit"], "decimal integer"),
    "after negative": ({"after": "-1"}, ["after"], "between 0 and 2147483647"),
    "after beyond 32 bits": ({"after": "2147483648"}, ["after"], "2147483647"),
    "state_id text": ({"state_id": "x"}, ["state_id"], "state_id must be a decimal integer"),
    "state_id float": ({"state_id": "1.5"}, ["state_id"], "got '1.5'"),
    "state_id beyond 32 bits": ({"state_id": "2147483648"}, ["state_id"], "-2147483648"),
    "NUL type": ({"task_types": "a\x00b"}, ["task_types"], "U+0000"),
    "too many types": (
        {"task_types": ",".join(str(i) for i in range(101))},
        ["task_types"],
        "at most 100",
    ),
    "all at once": (
        {"limit": "0", "after": "x", "state_id": "y"},
        ["state_id", "limit", "after"],
        "limit",
    ),
}


@pytest.mark.parametrize(
    ("params", "fields", "says"), BAD_PARAMETERS.values(), ids=BAD_PARAMETERS.keys()
)
@pytest.mark.parametrize("state", ["all", "completed"])
async def test_bad_query_parameters_are_a_400_naming_each(  # noqa: PLR0917 - fixtures and cases
    http: httpx.AsyncClient,
    seeded: dict[str, Any],
    state: str,
    params: dict[str, str],
    fields: list[str],
    says: str,
) -> None:
    body = assert_error_body(await http.get(url(state, seeded["service"]), params=params), 400)
    assert [e["field"] for e in body["errors"]] == fields
    assert says in body["message"]


async def test_a_bad_service_id_in_a_query_is_a_400(http: httpx.AsyncClient) -> None:
    body = assert_error_body(await http.get("/genesys/1/cs/services/0/tasks"), 400)
    assert [e["field"] for e in body["errors"]] == ["service_id"]


async def test_with_the_database_unreachable_queries_answer_503(settings: StackSettings) -> None:
    nowhere = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/ucs"
    async with running_bridge(bridge_settings(settings, database_url=nowhere)) as running:
        response = await running.client.get(url("completed", 5))
        assert assert_error_body(response, 503)["message"].startswith("The tasks database")
        assert response.headers["retry-after"] == "1"
