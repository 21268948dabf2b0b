"""The HTTP answer to a request from the reply that answers it, written once for every kind.

| request | reply | answer |
|---|---|---|
| start | task.created | 201, `Location`, exactly `{"task_id": N}` |
| end (Complete Task) | task.completed | 204, no body |
| extension (Update Task Extension) | task.extension.updated | 200, the extension's value |
| any | task.rejected | the rejection's status and error body |

The consumer answers an identity it knows with what it stored for it, whatever the new request
asks. So a reply may answer another request than this one: the Idempotency-Key was used before
for another service, another kind of request, another task or another extension. That is a 422
naming what the key was used for, never the other request's answer.
"""

from __future__ import annotations

from urllib.parse import quote

import orjson
from fastapi import Response

from producer_tools.bridge.errors import JSON, IdempotencyKeyReusedError, error_response
from producer_tools.bridge.messages import CompletedReply, CreatedReply, ExtensionReply, Reply
from schemas.replies import TaskRejected
from schemas.requests import TaskRequest
from schemas.validation import EventKind


def status_location(base_uri: str, service_id: int, event_id: str) -> str:
    """The URL of a request's status resource (the event id percent-encoded)."""
    return f"{base_uri}/services/{service_id}/tasks/requests/{quote(event_id, safe='')}"


def _extension(name: str) -> str:
    shown = name if len(name) <= 100 else name[:100] + "..."
    return repr(shown)


def _other_request(request: TaskRequest, reply: Reply) -> str | None:
    """What the reply answers when that is not `request` (the key named another request)."""
    if isinstance(reply, TaskRejected):
        # A rejection naming no task, or this one, is this request's (or one the bridge cannot
        # tell apart from it).
        same = reply.task_id is None or reply.task_id == request.task_id
        other = f"a request about task {reply.task_id}"
    elif isinstance(reply, CreatedReply):
        same = request.kind is EventKind.START
        other = "a Start Task request"
    elif isinstance(reply, CompletedReply):
        same = request.kind is EventKind.END and reply.task_id == request.task_id
        other = f"completing task {reply.task_id}"
    else:
        same = (
            request.kind is EventKind.EXTENSION
            and reply.task_id == request.task_id
            and reply.extension == request.extension
        )
        other = f"updating extension {_extension(reply.extension)} of task {reply.task_id}"
    return None if same else other


def check_same_request(key: str, request: TaskRequest, reply: Reply) -> None:
    """Raise IdempotencyKeyReusedError (422) when the reply answers another request than
    `request` under the same key (`key`: the event id)."""
    if reply.service_id is not None and reply.service_id != request.service_id:
        raise IdempotencyKeyReusedError.for_service(key, reply.service_id, request.service_id)
    other = _other_request(request, reply)
    if other is not None:
        raise IdempotencyKeyReusedError.for_request(key, other)


def reply_response(key: str, request: TaskRequest, reply: Reply) -> Response:
    """The answer to `request` from the reply that answers its identity (`key`: its event id)."""
    check_same_request(key, request, reply)
    if isinstance(reply, TaskRejected):
        return error_response(reply.status, reply.error)
    if isinstance(reply, CreatedReply):
        body = orjson.dumps({"task_id": reply.task_id})
        return Response(body, 201, {"Location": reply.location}, media_type=JSON)
    if isinstance(reply, CompletedReply):
        return Response(status_code=204)
    assert isinstance(reply, ExtensionReply)  # noqa: S101 - the last kind of Reply
    return Response(orjson.dumps(reply.value), 200, media_type=JSON)
