"""The documented HTTP surface: response bodies, per-operation responses, the OpenAPI document.

Every status code a route can answer is declared here, with its headers and its body model
(ErrorBody for every 4xx/5xx); FastAPI's own 422 is removed (the bridge answers 400 instead) and
the 404/405 every path can give are documented once, as shared components.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

from schemas.replies import ErrorBody
from schemas.task_start import INT64_MAX, TaskStartEvent
from schemas.wire import MAX_ID_LENGTH

# --- bodies


class TaskIdBody(BaseModel):
    """201 Created: the id of the task (exactly this one key, as the Context Services API)."""

    task_id: int = Field(description="The 32-bit task id.")


class RequestStatusBody(BaseModel):
    """A start request's state: pending (202) or created (303 to the task)."""

    state: Literal["pending", "created"] = Field(description="Where the request stands.")
    message: str = Field(description="What it means, for a person.")
    event_id: str = Field(description="The request's event id (its Idempotency-Key, if sent).")
    status_location: str = Field(description="This request's status resource.")
    task_id: int | None = Field(default=None, description="The task, once created.")
    location: str | None = Field(default=None, description="The task's URL, once created.")


class StartedBody(BaseModel):
    """The task's start event."""

    model_config = ConfigDict(title="TaskStarted")

    timestamp: str = Field(description="Start time, UTC: `2010-05-20T15:41:52.380Z`.")
    session_id: str | None = None
    interaction_id: str | None = None
    application_type: int | str | None = None
    application_id: int | None = None
    resource_type: int | str | None = None
    resource_id: int | None = None
    media_type: int | str | None = None


class TaskBody(BaseModel):
    """A task. Fields its start event did not give are omitted; attached data (any other key)
    appears only as asked by `?extensions=`."""

    model_config = ConfigDict(extra="allow", title="Task")

    task_id: int
    service_id: int
    state_id: int | None = None
    task_type: int | str | None = None
    est_duration: int | None = None
    started: StartedBody


class AliveBody(BaseModel):
    """The process is up."""

    status: Literal["alive"] = "alive"


class ReadyBody(BaseModel):
    """Both the broker and the database answer."""

    status: Literal["ready"] = "ready"
    kafka: Literal["ok"] = "ok"
    postgresql: Literal["ok"] = "ok"


# --- responses

_STRING = {"schema": {"type": "string"}}
LOCATION_TASK = {"Location": {"description": "The task's URL.", **_STRING}}
LOCATION_STATUS = {"Location": {"description": "This request's status resource.", **_STRING}}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before asking again.", **_STRING}}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "model": ErrorBody,
        "description": description,
        **({"headers": headers} if headers else {}),
    }


_BAD_SERVICE = "Invalid `service_id` (not a decimal integer in 1 .. 2^63-1)."
_UNAVAILABLE = _error(
    "The broker or the database cannot be reached, or UCS_BRIDGE_MAX_PENDING_REQUESTS requests "
    "are in progress.",
    RETRY_AFTER,
)

START_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: {"model": TaskIdBody, "description": "Task created.", "headers": LOCATION_TASK},
    202: {
        "model": RequestStatusBody,
        "description": "No reply within the reply timeout: the request was published and will "
        "be processed; follow Location (UCS_BRIDGE_ACCEPT_ON_TIMEOUT=true, the default).",
        "headers": {**LOCATION_STATUS, **RETRY_AFTER},
    },
    400: _error(
        "Malformed JSON (the message says where), a body that is not an object, a wrong type "
        f"or an out-of-range value, a bad Idempotency-Key. {_BAD_SERVICE}"
    ),
    413: _error("The body is larger than UCS_MAX_BODY_BYTES."),
    415: _error("The Content-Type is not application/json or application/*+json (UTF-8)."),
    422: _error("The Idempotency-Key was already used for a request to another service."),
    502: _error("The task service sent a reply the bridge cannot read."),
    503: _UNAVAILABLE,
    504: _error(
        "No reply within the reply timeout (UCS_BRIDGE_ACCEPT_ON_TIMEOUT=false): the task may "
        "still be created; retry with the same Idempotency-Key."
    ),
    507: _error("The task id space (1 .. 2147483647) is exhausted."),
}

STATUS_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {
        "model": RequestStatusBody,
        "description": "Still pending (or never sent: the bridge cannot tell them apart).",
        "headers": {**LOCATION_STATUS, **RETRY_AFTER},
    },
    303: {
        "model": RequestStatusBody,
        "description": "The task exists: see Location.",
        "headers": LOCATION_TASK,
    },
    400: _error(f"The request was rejected (its error body), or: {_BAD_SERVICE}"),
    404: _error("The request's task or rejection belongs to another service."),
    413: _error("The request was rejected: its body was too large."),
    503: _UNAVAILABLE,
    507: _error("The request was rejected: the task id space is exhausted."),
}

TASK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": TaskBody, "description": "The task."},
    400: _error(_BAD_SERVICE),
    404: _error("No such task, or a task of another service."),
    503: _UNAVAILABLE,
}

READY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": ReadyBody, "description": "Ready."},
    503: _error("Not ready: `errors` names what does not answer (kafka, postgresql).", RETRY_AFTER),
}

SERVICE_ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": INT64_MAX}

IDEMPOTENCY_KEY_PARAMETER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Becomes the event id: a retry with the same key gets the same task. "
    f"1..{MAX_ID_LENGTH} printable ASCII characters; a quoted string means its content.",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH, "pattern": "^[ -~]+$"},
}

START_OPENAPI_EXTRA: dict[str, Any] = {
    "parameters": [IDEMPOTENCY_KEY_PARAMETER],
    "requestBody": {
        "required": True,
        "description": "The Task Start Event, published untouched as the event's data.",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/TaskStartEvent"}}
        },
    },
}

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""Answered without authentication (routes.py puts AUTHENTICATED on every other route)."""

SECURITY_SCHEMES: dict[str, Any] = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "One of UCS_BRIDGE_AUTH_TOKENS as `Authorization: Bearer <token>`.",
    },
    "apiKeyAuth": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "One of UCS_BRIDGE_AUTH_TOKENS as `X-API-Key: <token>`.",
    },
}
UNAUTHORIZED = {
    "description": "Authentication is on (UCS_BRIDGE_AUTH_TOKENS) and no accepted token was "
    "presented.",
    "headers": {"WWW-Authenticate": {"description": "`Bearer realm=...`", **_STRING}},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
}

_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
_SHARED_RESPONSES = {
    "NotFound": {
        "description": "404 for any path that is not one of these operations.",
        "content": _ERROR_CONTENT,
    },
    "MethodNotAllowed": {
        "description": "405 for any other method on these paths; `Allow` lists the right ones.",
        "headers": {"Allow": {"description": "The allowed methods.", **_STRING}},
        "content": _ERROR_CONTENT,
    },
    "RequestTimeout": {
        "description": "408 on any path: the header fields did not arrive within "
        "UCS_BRIDGE_HEADER_TIMEOUT_MS, or the body within UCS_BRIDGE_BODY_TIMEOUT_MS.",
        "content": _ERROR_CONTENT,
    },
    "URITooLong": {
        "description": "414 on any path: the request target is longer than "
        "UCS_BRIDGE_MAX_URL_BYTES.",
        "content": _ERROR_CONTENT,
    },
    "HeaderFieldsTooLarge": {
        "description": "431 on any path: more than UCS_BRIDGE_MAX_HEADERS header fields, or more "
        "than UCS_BRIDGE_MAX_HEADER_BYTES of them.",
        "content": _ERROR_CONTENT,
    },
}

DESCRIPTION = """\
The Genesys Context Services *Start Task* operation (CV.WS.SRV.8) over Kafka request-reply,
and the read of the task it creates. See docs/http-api.md.

Every 4xx/5xx body is an `ErrorBody` (`message`, `exception`, `errors`). Any path not listed here
answers 404 (components/responses/NotFound); another method on a listed path answers 405 with an
`Allow` header (components/responses/MethodNotAllowed). Any request may get 408, 414 or 431 when
it passes the bridge's bounds (components/responses); every operation but the health checks
answers 503 with `Retry-After` while UCS_BRIDGE_MAX_PENDING_REQUESTS requests are in progress.

Every `/genesys/1/cs/...` operation is also served at the 8.0/8.1 path without `/genesys/1/cs`
(operation ids `legacy_*`), unless UCS_BRIDGE_LEGACY_PATHS=false.
"""


def _secure(document: dict[str, Any]) -> None:
    """Declare the security schemes, and on every non-public operation their use and 401."""
    document["components"]["securitySchemes"] = SECURITY_SCHEMES
    for path, operations in document["paths"].items():
        if path in PUBLIC_PATHS:
            continue
        for operation in operations.values():
            operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
            operation["responses"]["401"] = UNAUTHORIZED


def _document(app: FastAPI, *, secured: bool) -> dict[str, Any]:
    document = get_openapi(
        title=app.title, version=app.version, description=DESCRIPTION, routes=app.routes
    )
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for operations in document["paths"].values():
        for operation in operations.values():
            responses = operation["responses"]
            if responses.get("422", {}).get("description") == "Validation Error":
                del responses["422"]  # FastAPI's automatic one: the bridge answers 400 instead
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "service_id":
                    parameter["schema"] = dict(SERVICE_ID_SCHEMA)
    event = TaskStartEvent.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(event.pop("$defs", {}))
    schemas["TaskStartEvent"] = event
    document["components"]["responses"] = _SHARED_RESPONSES
    if secured:
        _secure(document)
    return document


def install_openapi(app: FastAPI, *, secured: bool = False) -> None:
    """Serve our OpenAPI document (built once, on first request) at /openapi.json; `secured`:
    authentication is on (the security schemes and 401 are declared)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app, secured=secured)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override
