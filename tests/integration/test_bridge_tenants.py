"""Tenants on HTTP (UCS_TENANTS): `ContactCenterId` required on every task route with the
documented messages, the tenant and group published with every request, and another tenant's
task, request or list exactly like an unknown one. Without UCS_TENANTS the headers are ignored.

Tasks, changes and rejections are stored through the consumer's own repository; the bridges
here run without a consumer (a published request answers 202).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from consumer.db.uow import SqlUnitOfWork
from consumer.domain import EventIdentity, Task
from producer_tools.bridge.app import create_app
from producer_tools.bridge.messages import source_for
from producer_tools.bridge.routes import QUERY_PATHS
from schemas import wire
from tests.integration.test_bridge import (
    JSON_HEADERS,
    assert_error_body,
    bridge_settings,
    published_ids,
    published_requests,
    running_bridge,
)
from tests.integration.test_readside import applied
from tests.integration.test_repository import (
    engine_for,
    extension,
    new_service,
    rejection,
    start,
    started,
)
from tests.servers import StackSettings, create_topics, make_settings

ACME = {"ContactCenterId": "acme"}
GLOBEX = {"ContactCenterId": "globex"}
MISSING = (
    "Invalid tenant specified : no tenant specified in multi-tenant environment. Verify "
    "configuration and 'ContactCenterId' HTTP header."
)


def unknown(value: str) -> str:
    return (
        "Invalid tenant specified : specified tenant in HTTP header "
        f"'ContactCenterId'='{value}' not configured. Verify configuration."
    )


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async for built in engine_for(database_url):
        yield built


@pytest.fixture(scope="module")
async def stack(kafka_bootstrap: str, database_url: str) -> StackSettings:
    settings = make_settings(kafka_bootstrap, database_url)
    await create_topics(settings)
    return settings


@pytest.fixture(scope="module")
async def multi(stack: StackSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A bridge with two tenants (no consumer: published requests answer 202)."""
    tenants = bridge_settings(stack, tenants=" acme, globex ", bridge_reply_timeout_ms=100)
    async with running_bridge(tenants) as running:
        yield running.client


@pytest.fixture(scope="module")
async def single(stack: StackSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A single-tenant bridge on the same servers."""
    async with running_bridge(bridge_settings(stack, bridge_reply_timeout_ms=100)) as running:
        yield running.client


@pytest.fixture(scope="module")
async def owned(engine: AsyncEngine) -> dict[str, Task]:
    """One service's tasks: acme's (group sales), globex's, and one stored without a tenant."""
    service = new_service()
    acme, globex, nobody = await started(
        engine,
        start(service, tenant="acme", group="sales", task_type="claim"),
        start(service, tenant="globex", task_type="claim"),
        start(service, task_type="claim"),
    )
    return {"acme": acme, "globex": globex, "none": nobody}


def task_url(task: Task, *, legacy: bool = False) -> str:
    root = "" if legacy else "/genesys/1/cs"
    return f"{root}/services/{task.service_id}/tasks/{task.task_id}"


def routes(service: int, task_id: int) -> list[tuple[str, str, bytes | None]]:
    """Every task route (method, path, body), in its 8.5 and its 8.0/8.1 form."""
    tasks = f"/services/{service}/tasks"
    forms = [
        ("POST", f"{tasks}/start", b"{}"),
        ("POST", f"{tasks}/{task_id}/end", b"{}"),
        ("PUT", f"{tasks}/{task_id}/extensions/Proposal", b'{"seats": 2}'),
        ("GET", f"{tasks}/requests/some-request", None),
        ("GET", f"{tasks}/{task_id}", None),
        ("GET", f"/service/{service}/tasks/{task_id}", None),
        ("GET", tasks, None),
        ("GET", f"{tasks}/active", None),
        ("GET", f"{tasks}/completed", None),
    ]
    return [(m, root + p, b) for m, p, b in forms for root in ("/genesys/1/cs", "")]


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        pytest.param({}, MISSING, id="missing"),
        pytest.param({"ContactCenterId": "  "}, MISSING, id="blank"),
        pytest.param({"ContactCenterId": "initech"}, unknown("initech"), id="unknown"),
        pytest.param({"ContactCenterId": "ACME"}, unknown("ACME"), id="another case"),
        pytest.param({"GroupId": "sales"}, MISSING, id="a group alone"),
    ],
)
async def test_every_task_route_without_a_configured_tenant_is_a_400_and_publishes_nothing(
    multi: httpx.AsyncClient,
    stack: StackSettings,
    owned: dict[str, Task],
    headers: dict[str, str],
    message: str,
) -> None:
    task = owned["acme"]
    keys = []
    for method, path, body in routes(task.service_id, task.task_id):
        key = f"refused-{uuid.uuid4().hex}"
        keys.append(key)
        sent = {**JSON_HEADERS, **headers, "Idempotency-Key": key}
        response = await multi.request(method, path, content=body, headers=sent)
        error = assert_error_body(response, 400)
        assert error["message"] == message, (method, path)
        assert [e["field"] for e in error["errors"]] == ["ContactCenterId"]
    assert not set(keys) & await published_ids(stack)


async def test_a_tenant_reads_its_own_tasks_and_another_s_exactly_like_unknown_ones(
    multi: httpx.AsyncClient, owned: dict[str, Task]
) -> None:
    acme, globex = owned["acme"], owned["globex"]
    own = await multi.get(task_url(acme), headers=ACME)
    assert (own.status_code, own.json()["task_id"]) == (200, acme.task_id)
    assert "tenant" not in own.json()
    assert "group" not in own.json()
    assert (await multi.get(task_url(acme, legacy=True), headers=ACME)).content == own.content

    theirs = await multi.get(task_url(acme), headers=GLOBEX)
    unknown_id = f"/genesys/1/cs/services/{acme.service_id}/tasks/2147483647"
    nothing = await multi.get(unknown_id, headers=ACME)
    assert_error_body(theirs, 404)
    assert_error_body(nothing, 404)
    assert theirs.json()["message"] == nothing.json()["message"].replace(
        "task 2147483647", f"task {acme.task_id}"
    )
    for task in (globex, owned["none"]):  # neither globex's task nor one without a tenant
        assert_error_body(await multi.get(task_url(task), headers=ACME), 404)


@pytest.mark.parametrize("state", ["all", "active"])
async def test_a_tenant_lists_only_its_own_tasks(
    multi: httpx.AsyncClient, owned: dict[str, Task], state: str
) -> None:
    url = QUERY_PATHS[state].format(service_id=owned["acme"].service_id)
    for tenant, headers in (("acme", ACME), ("globex", GLOBEX)):
        found = await multi.get(url, params={"task_types": "claim"}, headers=headers)
        assert [t["task_id"] for t in found.json()] == [owned[tenant].task_id]


async def test_a_single_tenant_bridge_ignores_the_headers_and_sees_no_tenant_s_task(
    single: httpx.AsyncClient, owned: dict[str, Task]
) -> None:
    nobody = owned["none"]
    for headers in ({}, {"ContactCenterId": "initech", "GroupId": "x"}):
        read = await single.get(task_url(nobody), headers=headers)
        assert (read.status_code, read.json()["task_id"]) == (200, nobody.task_id)
        listed = await single.get(QUERY_PATHS["all"].format(service_id=nobody.service_id))
        assert [t["task_id"] for t in listed.json()] == [nobody.task_id]
    assert_error_body(await single.get(task_url(owned["acme"]), headers=ACME), 404)


async def test_start_end_and_extension_requests_carry_the_tenant_and_group(
    multi: httpx.AsyncClient, stack: StackSettings, owned: dict[str, Task]
) -> None:
    task = owned["acme"]
    tasks = f"/genesys/1/cs/services/{task.service_id}/tasks"
    sent: dict[str, tuple[str, str, dict[str, str]]] = {
        f"start-{uuid.uuid4().hex}": ("POST", f"{tasks}/start", {**ACME, "GroupId": "sales"}),
        f"end-{uuid.uuid4().hex}": ("POST", f"{tasks}/{task.task_id}/end", ACME),
        f"ext-{uuid.uuid4().hex}": (
            "PUT",
            f"{tasks}/{task.task_id}/extensions/{quote('Pro posal', safe='')}",
            {**GLOBEX, "GroupId": "g" * 300},
        ),
    }
    for key, (method, path, headers) in sent.items():
        response = await multi.request(
            method, path, content=b"{}", headers={**JSON_HEADERS, **headers, "Idempotency-Key": key}
        )
        assert response.status_code == 202, response.text  # published; no consumer runs here
        assert response.json()["event_id"] == key
    records = await published_requests(stack, *sent)
    start_key, end_key, ext_key = sent
    expected: dict[str, dict[str, Any]] = {
        start_key: {"ce_type": wire.TYPE_TASK_START, "ce_tenantid": "acme", "ce_groupid": "sales"},
        end_key: {"ce_type": wire.TYPE_TASK_END, "ce_tenantid": "acme", "ce_groupid": None},
        ext_key: {"ce_type": wire.TYPE_TASK_EXTENSION, "ce_tenantid": "globex"},
    }
    for key, attributes in expected.items():
        headers = records[key]
        for name, value in attributes.items():
            assert headers.get(name) == (None if value is None else value.encode()), (key, name)
    assert records[start_key]["ce_source"] == source_for("acme").encode()
    assert records[ext_key]["ce_source"] == source_for("globex").encode()
    assert records[ext_key]["ce_groupid"] == b"g" * 256  # cut to the stored length
    assert records[ext_key]["ce_extension"] == b"Pro posal"
    for key in (end_key, ext_key):
        assert records[key]["ce_taskid"] == str(task.task_id).encode()
        assert records[key]["ce_serviceid"] == str(task.service_id).encode()
    assert "ce_taskid" not in records[start_key]


async def test_a_request_s_status_is_found_by_its_own_tenant_only(
    multi: httpx.AsyncClient, single: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    service = new_service()
    created, changed, refused = (f"{what}-{uuid.uuid4().hex}" for what in ("s", "x", "r"))
    acme = EventIdentity(source_for("acme"), created)
    [task] = await started(engine, start(service, tenant="acme")._replace(identity=acme))
    changing = extension(task, "Proposal", [{"seats": 2}], tenant="acme")
    await applied(engine, changing._replace(identity=EventIdentity(source_for("acme"), changed)))
    async with SqlUnitOfWork(engine) as uow:
        refusal = rejection(EventIdentity(source_for("acme"), refused), service, task.task_id)
        await uow.tasks.record_rejections([refusal])
        await uow.commit()

    def status(key: str) -> str:
        return f"/genesys/1/cs/services/{service}/tasks/requests/{key}"

    found = await multi.get(status(created), headers=ACME)
    assert (found.status_code, found.json()["state"]) == (303, "created")
    assert found.headers["location"].endswith(f"/service/{service}/tasks/{task.task_id}")
    update = await multi.get(status(changed), headers=ACME)
    assert (update.status_code, update.json()["state"]) == (303, "updated")
    assert update.json()["extension"] == "Proposal"
    rejected = await multi.get(status(refused), headers=ACME)
    assert (rejected.status_code, rejected.json()["message"]) == (404, "no such task")
    for key in (created, changed, refused):  # unknown to another tenant and to single-tenant
        for client, headers in ((multi, GLOBEX), (single, ACME)):
            pending = await client.get(status(key), headers=headers)
            assert (pending.status_code, pending.json()["state"]) == (202, "pending"), key


def test_the_openapi_document_requires_contact_center_id_only_with_tenants() -> None:
    def tenant_parameters(settings: StackSettings) -> list[dict[str, Any]]:
        paths = create_app(settings).openapi()["paths"]
        return [
            parameter
            for path, operations in paths.items()
            if path.startswith("/genesys/1/cs/")
            for operation in operations.values()
            for parameter in operation["parameters"]
            if parameter["name"] == "ContactCenterId"
        ]

    with_tenants = tenant_parameters(StackSettings.of(tenants="acme,globex"))
    without = tenant_parameters(StackSettings.of())
    assert len(with_tenants) == len(without) == 9
    assert all(p["required"] and p["in"] == "header" for p in with_tenants)
    assert not any(p["required"] for p in without)
    assert (
        "acme" not in orjson.dumps(create_app(StackSettings.of(tenants="acme")).openapi()).decode()
    )
