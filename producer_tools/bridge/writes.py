"""The routes that change tasks, and the status of their requests.

Start Task, Complete Task and Update Task Extension take the same way: checked inputs (the
caller's tenant, the body's type and size, the Idempotency-Key, then the shared validation of
ids and body) -> one event on Kafka -> its correlated reply -> the answer (`answers`). No reply
in time: 202 and a status resource (or 504 in strict mode), whatever the operation.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path, Request, Response

from observability import tracing
from producer_tools.bridge import inputs, openapi
from producer_tools.bridge.answers import reply_response, status_location
from producer_tools.bridge.bodies import RequestStatusBody
from producer_tools.bridge.deps import (
    AUTHENTICATED,
    BridgeDep,
    Caller,
    CallerDep,
    ServiceId,
    tasks,
)
from producer_tools.bridge.errors import (
    JSON,
    RETRY_AFTER_S,
    NotFoundError,
    ReplyTimeoutError,
    error_response,
)
from producer_tools.bridge.messages import identity_for
from producer_tools.bridge.sender import NoReplyYet
from producer_tools.bridge.state import Bridge
from schemas.ids import parse_service_id
from schemas.replies import EventRef, StoredTask, TaskRejected
from schemas.requests import TaskRequest
from schemas.validation import EventKind, validate_event

START = "/services/{service_id}/tasks/start"
END = "/services/{service_id}/tasks/{task_id}/end"
EXTENSION = "/services/{service_id}/tasks/{task_id}/extensions/{extension_name:path}"
STATUS = "/services/{service_id}/tasks/requests/{event_id:path}"

TaskId = Annotated[str, Path(description="The task's 32-bit id (1 .. 2147483647).")]

_STILL = {
    EventKind.START: "the task may still be created: retry with the same Idempotency-Key to "
    "get its id",
    EventKind.END: "the task may still be completed: retry with the same Idempotency-Key to "
    "learn the outcome",
    EventKind.EXTENSION: "the extension may still be updated: retry with the same "
    "Idempotency-Key to learn the outcome",
}
_DONE: dict[EventKind, tuple[Literal["created", "completed", "updated"], str]] = {
    EventKind.START: ("created", "The task exists: see Location."),
    EventKind.END: ("completed", "The task is completed: see Location."),
    EventKind.EXTENSION: ("updated", "The extension is updated: see the task at Location."),
}
"""What a request's status says once it was applied."""


def _pending(bridge: Bridge, service_id: int, identity: EventRef, message: str) -> Response:
    where = status_location(bridge.settings.contract.base_uri, service_id, identity.id)
    body = RequestStatusBody(
        state="pending", message=message, event_id=identity.id, status_location=where
    )
    headers = {"Location": where, "Retry-After": str(RETRY_AFTER_S)}
    return Response(body.model_dump_json(exclude_none=True), 202, headers, media_type=JSON)


async def publish(
    request: Request,
    bridge: Bridge,
    caller: Caller,
    kind: EventKind,
    service_id: str,
    *,
    task_id: str | None = None,
    extension: str | None = None,
    headers: inputs.RequestHeaders | None = None,
) -> Response:
    """Check the request (415, 413, 400: its headers, then its ids and body together), publish
    it (the body untouched) under its identity and answer with its reply (or its absence).
    `headers`: the request's, when the caller has read them already."""
    if headers is None:
        headers = inputs.RequestHeaders(request.scope["headers"])
    inputs.check_content_type(headers.get("content-type"))
    inputs.check_declared_length(headers.get("content-length"), bridge.limits, kind)
    key = inputs.idempotency_key(headers.getlist(inputs.IDEMPOTENCY_KEY))
    body = await inputs.read_body(request.stream(), bridge.limits, kind)
    valid = validate_event(
        kind, service_id, body, bridge.limits, task_id=task_id, extension=extension
    )
    outgoing = TaskRequest.of(valid, body, tenant=caller.tenant, group=caller.group)
    identity = identity_for(key, caller.tenant)
    reply = await bridge.sender.send(outgoing, identity, tracing.trace_context(headers))
    if not isinstance(reply, NoReplyYet):
        return reply_response(identity.id, outgoing, reply)
    waited = bridge.settings.bridge.reply_timeout_ms
    if not bridge.settings.bridge.accept_on_timeout:
        raise ReplyTimeoutError(
            f"No reply from the task service within {waited} ms; {_STILL[kind]}."
        )
    bridge.metrics.accepted_without_reply.inc()
    return _pending(
        bridge,
        valid.service_id,
        identity,
        f"No reply within {waited} ms: the request was published and will be processed. "
        "Follow Location for its outcome.",
    )


def _write(kind: EventKind) -> dict[str, Any]:
    """What every write route declares besides its status and summary."""
    return {"response_model": None, "dependencies": AUTHENTICATED, **openapi.WRITES[kind]}


@tasks.post(START, status_code=201, summary="Start a task (CV.WS.SRV.8)", **_write(EventKind.START))
async def start_task(
    service_id: ServiceId, request: Request, bridge: BridgeDep, caller: CallerDep
) -> Response:
    """Publish a task-start event (the body, untouched) and answer with its reply."""
    return await publish(request, bridge, caller, EventKind.START, service_id)


@tasks.post(END, status_code=204, summary="Complete a task (CV.WS.SRV.9)", **_write(EventKind.END))
async def complete_task(
    service_id: ServiceId, task_id: TaskId, request: Request, bridge: BridgeDep, caller: CallerDep
) -> Response:
    """Publish a task-end event (the body, untouched): 204 once the task is completed."""
    return await publish(request, bridge, caller, EventKind.END, service_id, task_id=task_id)


@tasks.put(
    EXTENSION, summary="Update a task's extension (CV.WS.SRV.18)", **_write(EventKind.EXTENSION)
)
async def update_extension(  # keyword-only: FastAPI passes every parameter by name
    *,
    service_id: ServiceId,
    task_id: TaskId,
    extension_name: Annotated[
        str, Path(description="The extension (attached-data key) to replace, percent-encoded.")
    ],
    request: Request,
    bridge: BridgeDep,
    caller: CallerDep,
) -> Response:
    """Publish an extension update (the body, untouched: the new whole value); 200 with the
    value once replaced."""
    inputs.check_utf8_path(request.scope.get("raw_path", b""), "extension_name")
    return await publish(
        request,
        bridge,
        caller,
        EventKind.EXTENSION,
        service_id,
        task_id=task_id,
        extension=extension_name,
    )


@tasks.get(
    STATUS,
    status_code=202,  # the answer while pending: no 200 is ever given
    response_model=None,
    responses=openapi.STATUS_RESPONSES,
    summary="The status of a start, end or extension request",
    dependencies=AUTHENTICATED,
)
async def request_status(
    service_id: ServiceId,
    event_id: Annotated[str, Path(description="The request's event id (percent-encoded).")],
    bridge: BridgeDep,
    caller: CallerDep,
) -> Response:
    """303 to the task once the request was applied, its error once rejected, 202 while
    pending. Only the caller's tenant's requests are found (each tenant has its own source)."""
    checked = parse_service_id(service_id)
    inputs.check_event_id(event_id)
    identity = identity_for(event_id, caller.tenant)
    outcome = await bridge.reader.request_outcome(identity.source, identity.id)
    if outcome is None:
        return _pending(bridge, checked, identity, "Not processed yet: ask again later.")
    not_found = NotFoundError(f"Not found: service {checked} has no request {event_id!r}.")
    if isinstance(outcome, TaskRejected):
        if outcome.service_id != checked:
            raise not_found
        return error_response(outcome.status, outcome.error)
    task = outcome if isinstance(outcome, StoredTask) else outcome.task
    if task.service_id != checked or task.tenant != caller.tenant:
        raise not_found
    kind = EventKind.START if isinstance(outcome, StoredTask) else EventKind(outcome.kind)
    state, message = _DONE[kind]
    location = bridge.settings.contract.location(task.service_id, task.task_id)
    body = RequestStatusBody(
        state=state,
        message=message,
        event_id=event_id,
        status_location=status_location(bridge.settings.contract.base_uri, checked, event_id),
        task_id=task.task_id,
        location=location,
        extension=None if isinstance(outcome, StoredTask) else outcome.extension,
    )
    return Response(
        body.model_dump_json(exclude_none=True), 303, {"Location": location}, media_type=JSON
    )
