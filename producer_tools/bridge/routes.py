"""The HTTP entrypoints: request -> checked inputs -> starter or store -> response. Nothing else.

The Context Services routes (`tasks`), relative to the API root:
- `POST /services/{service_id}/tasks/start`: start a task (201, 202 or an error);
- `GET  /services/{service_id}/tasks/requests/{event_id}`: a start request's status;
- `GET  /service[s]/{service_id}/tasks/{task_id}`: read a task (the Location target).
`install_routes` serves them under the 8.5 root `/genesys/1/cs` and, unless
`UCS_BRIDGE_LEGACY_PATHS=false`, under the 8.0/8.1 root `/` as well: a route added to `tasks`
gets both forms, each in the OpenAPI document. Beside them (`health`): `GET /healthz`, `/readyz`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from observability import tracing
from producer_tools.bridge import inputs, openapi
from producer_tools.bridge.errors import (
    JSON,
    OUTAGES,
    RETRY_AFTER_S,
    IdempotencyKeyReusedError,
    NotFoundError,
    ReplyTimeoutError,
    error_response,
    internal_detail,
)
from producer_tools.bridge.kafka import CreatedReply, Reply
from producer_tools.bridge.openapi import AliveBody, ReadyBody, RequestStatusBody
from producer_tools.bridge.representation import Extensions, render_task
from producer_tools.bridge.starter import BRIDGE_SOURCE, NoReplyYet, identity_for
from producer_tools.bridge.state import Bridge, get_bridge
from schemas.errors import ServiceError
from schemas.replies import ErrorBody, EventRef, FieldError, StoredTask
from schemas.task_start import parse_service_id

PREFIX = "/genesys/1/cs"
"""The 8.5 API root."""
LEGACY_PREFIX = ""
"""The 8.0/8.1 API root: the same routes without `/genesys/1/cs` (UCS_BRIDGE_LEGACY_PATHS)."""
START = "/services/{service_id}/tasks/start"
STATUS = "/services/{service_id}/tasks/requests/{event_id:path}"
TASKS = (
    "/services/{service_id}/tasks/{task_id:int}",
    "/service/{service_id}/tasks/{task_id:int}",  # the form the Location uses
)
START_PATH = PREFIX + START
STATUS_PATH = PREFIX + STATUS
TASK_PATHS = tuple(PREFIX + path for path in TASKS)

DATABASE_NOT_READY = "the tasks database does not answer, or is not migrated"

tasks = APIRouter()
"""The Context Services routes, relative to the API root (served under both roots)."""
health = APIRouter()
BridgeDep = Annotated[Bridge, Depends(get_bridge)]
ServiceId = Annotated[str, Path(description="The service's 64-bit id (1 .. 2^63-1).")]


async def authenticated(request: Request, bridge: BridgeDep) -> None:
    """401 unless authentication is off or the request presents an accepted token."""
    bridge.auth.check(request.headers)


AUTHENTICATED = [Depends(authenticated)]
"""On every route but /healthz and /readyz (openapi.PUBLIC_PATHS)."""


def status_location(bridge: Bridge, service_id: int, event_id: str) -> str:
    """The URL of a start request's status resource."""
    base = bridge.settings.contract.base_uri
    return f"{base}/services/{service_id}/tasks/requests/{quote(event_id, safe='')}"


def _json(content: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status, headers=headers, media_type=JSON)


def _pending(bridge: Bridge, service_id: int, identity: EventRef, message: str) -> Response:
    where = status_location(bridge, service_id, identity.id)
    body = RequestStatusBody(
        state="pending", message=message, event_id=identity.id, status_location=where
    )
    headers = {"Location": where, "Retry-After": str(RETRY_AFTER_S)}
    return Response(body.model_dump_json(exclude_none=True), 202, headers, media_type=JSON)


def _answer(bridge: Bridge, service_id: int, reply: Reply | NoReplyYet) -> Response:
    if isinstance(reply, NoReplyYet):
        waited = bridge.settings.bridge.reply_timeout_ms
        if not bridge.settings.bridge.accept_on_timeout:
            raise ReplyTimeoutError(
                f"No reply from the task service within {waited} ms; the task may still be "
                "created: retry with the same Idempotency-Key to get its id."
            )
        bridge.metrics.accepted_without_reply.inc()
        return _pending(
            bridge,
            service_id,
            reply.identity,
            f"No reply within {waited} ms: the request was published and will be processed. "
            "Follow Location for its outcome.",
        )
    if reply.service_id is not None and reply.service_id != service_id:
        raise IdempotencyKeyReusedError.for_service(reply.event.id, reply.service_id, service_id)
    if isinstance(reply, CreatedReply):
        return _json({"task_id": reply.task_id}, 201, {"Location": reply.location})
    return error_response(reply.status, reply.error)


@tasks.post(
    START,
    status_code=201,
    response_model=None,
    responses=openapi.START_RESPONSES,
    openapi_extra=openapi.START_OPENAPI_EXTRA,
    summary="Start a task (CV.WS.SRV.8)",
    dependencies=AUTHENTICATED,
)
async def start_task(service_id: ServiceId, request: Request, bridge: BridgeDep) -> Response:
    """Publish a task-start event (the body, untouched) and answer with its reply."""
    headers = request.headers
    inputs.check_content_type(headers.get("content-type"))
    inputs.check_declared_length(headers.get("content-length"), bridge.limits)
    key = inputs.idempotency_key(headers.getlist(inputs.IDEMPOTENCY_KEY))
    body = await inputs.read_body(request.stream(), bridge.limits)
    checked = inputs.validate_start(service_id, body, bridge.limits)
    trace = tracing.trace_context(headers)
    reply = await bridge.starter.start(checked, body, identity_for(key), trace)
    return _answer(bridge, checked, reply)


@tasks.get(
    STATUS,
    response_model=None,
    responses=openapi.STATUS_RESPONSES,
    summary="The status of a start request",
    dependencies=AUTHENTICATED,
)
async def request_status(
    service_id: ServiceId,
    event_id: Annotated[str, Path(description="The request's event id (percent-encoded).")],
    bridge: BridgeDep,
) -> Response:
    """303 to the task once it exists, its error once rejected, 202 while pending."""
    checked = parse_service_id(service_id)
    inputs.check_event_id(event_id)
    not_found = NotFoundError(f"Not found: service {checked} has no start request {event_id!r}.")
    identity = EventRef(source=BRIDGE_SOURCE, id=event_id)
    outcome = await bridge.reader.outcome(identity.source, identity.id)
    if outcome is None:
        return _pending(bridge, checked, identity, "Not processed yet: ask again later.")
    if outcome.service_id != checked:
        raise not_found
    if isinstance(outcome, StoredTask):
        location = bridge.settings.contract.location(outcome.service_id, outcome.task_id)
        body = RequestStatusBody(
            state="created",
            message="The task exists: see Location.",
            event_id=event_id,
            status_location=status_location(bridge, checked, event_id),
            task_id=outcome.task_id,
            location=location,
        )
        return Response(body.model_dump_json(), 303, {"Location": location}, media_type=JSON)
    return error_response(outcome.status, outcome.error)


async def read_task(
    service_id: ServiceId,
    task_id: Annotated[int, Path(description="The task's 32-bit id.")],
    bridge: BridgeDep,
    extensions: Annotated[
        list[str] | None,
        Query(description="Attached data to include: `*` for all, or comma-separated names."),
    ] = None,
) -> Response:
    """The task, with the attached data `extensions` asks for."""
    checked = parse_service_id(service_id)
    task = await bridge.reader.task(checked, task_id)
    if task is None:
        raise NotFoundError(f"Not found: service {checked} has no task {task_id}.")
    return Response(render_task(task, Extensions.parse(extensions or [])), media_type=JSON)


for _path in TASKS:
    tasks.add_api_route(
        _path,
        read_task,
        methods=["GET"],
        name=f"read_task{'_singular' if _path.startswith('/service/') else ''}",
        response_model=None,
        responses=openapi.TASK_RESPONSES,
        summary="Read a task",
        dependencies=AUTHENTICATED,
    )


@health.get("/healthz", response_model=AliveBody, summary="Liveness")
async def healthz() -> AliveBody:
    """The process answers."""
    return AliveBody()


@health.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
    summary="Metrics (Prometheus text format)",
)
async def metrics(bridge: BridgeDep) -> Response:
    """Requests by route and status, latency, pending replies, 202s, refusals, the Kafka link."""
    return Response(generate_latest(bridge.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@health.get("/readyz", response_model=None, responses=openapi.READY_RESPONSES, summary="Readiness")
async def readyz(bridge: BridgeDep) -> Response:
    """200 when both the broker and the database answer, else 503 naming what does not (the
    driver's own words go to the log, not into the answer)."""
    problems: list[FieldError] = []
    if not bridge.link.ready:
        problems.append(FieldError(field="kafka", problem=bridge.link.down_reason))
    try:
        await bridge.reader.check()
    except ServiceError as exc:
        OUTAGES.warning(internal_detail(exc), "GET /readyz")
        problems.append(FieldError(field="postgresql", problem=DATABASE_NOT_READY))
    if problems:
        listed = "; ".join(f"{p.field}: {p.problem}" for p in problems)
        body = ErrorBody(message=f"Not ready: {listed}.", errors=problems)
        return error_response(503, body, {"Retry-After": str(RETRY_AFTER_S)})
    return Response(ReadyBody().model_dump_json(), media_type=JSON)


def _operation_id(prefix: str) -> Callable[[APIRoute], str]:
    def operation_id(route: APIRoute) -> str:
        return prefix + route.name

    return operation_id


def install_routes(app: FastAPI, *, legacy_paths: bool) -> None:
    """Serve the routes: `tasks` under the 8.5 root (and the 8.0/8.1 one), then `health`."""
    app.include_router(tasks, prefix=PREFIX, generate_unique_id_function=_operation_id(""))
    if legacy_paths:
        legacy = _operation_id("legacy_")
        app.include_router(tasks, prefix=LEGACY_PREFIX, generate_unique_id_function=legacy)
    app.include_router(health)
