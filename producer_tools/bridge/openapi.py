"""The documented HTTP surface: per-operation responses and the OpenAPI document (the bodies
are in `bodies`).

Every status code a route can answer is declared here, with its headers and its body model
(ErrorBody for every 4xx/5xx); FastAPI's own 422 is removed (the bridge answers 400 instead) and
the 404/405 every path can give are documented once, as shared components.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from consumer.readside import QUERY_LIMIT_DEFAULT, QUERY_LIMIT_MAX
from producer_tools.bridge.bodies import (
    ReadyBody,
    RequestStatusBody,
    TaskBody,
    TaskIdBody,
    TaskListBody,
)
from schemas.extension import TaskExtensionValue
from schemas.replies import ErrorBody
from schemas.task_end import TaskEndEvent
from schemas.task_start import INT32_MAX, INT32_MIN, INT64_MAX, TaskStartEvent
from schemas.tenants import GROUP_HEADER, TENANT_HEADER
from schemas.validation import EventKind
from schemas.wire import MAX_ID_LENGTH

# --- responses

_STRING = {"schema": {"type": "string"}}
LOCATION_TASK = {"Location": {"description": "The task's URL.", **_STRING}}
LOCATION_STATUS = {"Location": {"description": "This request's status resource.", **_STRING}}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before asking again.", **_STRING}}
Responses = dict[int | str, dict[str, Any]]


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "model": ErrorBody,
        "description": description,
        **({"headers": headers} if headers else {}),
    }


_BAD_SERVICE = "Invalid `service_id` (not a decimal integer in 1 .. 2^63-1)."
_BAD_TENANT = (
    "With tenants configured (UCS_TENANTS): a missing or unknown `ContactCenterId` (the "
    "documented `Invalid tenant specified : ...` messages)."
)
_BAD_BODY = (
    "Malformed JSON (the message says where), a body that is not an object, a wrong type or an "
    "out-of-range value, a bad Idempotency-Key."
)
_UNAVAILABLE = _error(
    "The broker or the database cannot be reached, or UCS_BRIDGE_MAX_PENDING_REQUESTS requests "
    "are in progress.",
    RETRY_AFTER,
)
_ACCEPTED = {
    "model": RequestStatusBody,
    "description": "No reply within the reply timeout: the request was published and will be "
    "processed; follow Location (UCS_BRIDGE_ACCEPT_ON_TIMEOUT=true, the default).",
    "headers": {**LOCATION_STATUS, **RETRY_AFTER},
}
_NOT_FOUND = "No such task: unknown, another service's, or (multi-tenant) another tenant's."


def _bridged(effect: str) -> Responses:
    """The answers every request sent over Kafka can get besides its success."""
    return {
        202: _ACCEPTED,
        413: _error("The body is larger than UCS_MAX_BODY_BYTES."),
        415: _error("The Content-Type is not application/json or application/*+json (UTF-8)."),
        422: _error(
            "The Idempotency-Key was already used for another request: to another service, or "
            "of another kind, or about another task or extension."
        ),
        502: _error("The task service sent a reply the bridge cannot read."),
        503: _UNAVAILABLE,
        504: _error(
            f"No reply within the reply timeout (UCS_BRIDGE_ACCEPT_ON_TIMEOUT=false): {effect}; "
            "retry with the same Idempotency-Key."
        ),
    }


_START_RESPONSES: Responses = {
    201: {"model": TaskIdBody, "description": "Task created.", "headers": LOCATION_TASK},
    400: _error(f"{_BAD_BODY} {_BAD_SERVICE} {_BAD_TENANT}"),
    **_bridged("the task may still be created"),
    507: _error("The task id space (1 .. 2147483647) is exhausted."),
}

_END_RESPONSES: Responses = {
    204: {"description": "Task completed (or completed before by this very request)."},
    400: _error(
        f"{_BAD_BODY} An invalid `task_id`. The end `timestamp` is before the task's start. "
        f"{_BAD_SERVICE} {_BAD_TENANT}"
    ),
    404: _error(_NOT_FOUND),
    409: _error(
        "The task was completed by another request: the first completion stands (the same "
        "Idempotency-Key gets the 204 again)."
    ),
    **_bridged("the task may still be completed"),
}

_EXTENSION_RESPONSES: Responses = {
    200: {
        "model": TaskExtensionValue,
        "description": "The extension's value, as now stored (the whole value replaced).",
    },
    400: _error(
        f"{_BAD_BODY} A value that is not an object or an array of objects; an invalid "
        f"`task_id` or extension name (empty, control characters, a reserved name). "
        f"{_BAD_SERVICE} {_BAD_TENANT}"
    ),
    404: _error(_NOT_FOUND),
    **_bridged("the extension may still be updated"),
}

STATUS_RESPONSES: Responses = {
    202: {
        "model": RequestStatusBody,
        "description": "Still pending (or never sent: the bridge cannot tell them apart; "
        "another tenant's request is never found).",
        "headers": {**LOCATION_STATUS, **RETRY_AFTER},
    },
    303: {
        "model": RequestStatusBody,
        "description": "Applied (the task created or completed, the extension updated): see "
        "the task at Location.",
        "headers": LOCATION_TASK,
    },
    400: _error(f"The request was rejected (its error body), or: {_BAD_SERVICE} {_BAD_TENANT}"),
    404: _error(
        "The request was rejected because its task was not found, or its task or rejection "
        "belongs to another service."
    ),
    409: _error("The request was rejected: its task was completed by another request."),
    413: _error("The request was rejected: its body was too large."),
    503: _UNAVAILABLE,
    507: _error("The request was rejected: the task id space is exhausted."),
}

TASK_RESPONSES: Responses = {
    200: {"model": TaskBody, "description": "The task."},
    400: _error(f"{_BAD_SERVICE} {_BAD_TENANT}"),
    404: _error(_NOT_FOUND),
    503: _UNAVAILABLE,
}

QUERY_RESPONSES: Responses = {
    200: {
        "model": TaskListBody,
        "description": "The tasks, in task id order (at most `limit`; the next page starts "
        "`after` the last id). An empty array when none matches.",
    },
    400: _error(
        "A bad `state_id`, `task_types`, `limit` or `after` (each named in `errors`). "
        f"{_BAD_SERVICE} {_BAD_TENANT}"
    ),
    503: _UNAVAILABLE,
}
QUERY_SUMMARIES = {
    "all": "Query tasks (CV.WS.SRV.13)",
    "active": "Query active tasks (CV.WS.SRV.13)",
    "completed": "Query completed tasks (CV.WS.SRV.13)",
}
_PAGING = (
    "Filters: `state_id`, `task_types` (comma-separated ids or names), `extensions` (the "
    "attached data each task includes, as for a read). Paging (ours): `limit` (default 100, at "
    "most 1000) and `after` (the last task id seen)."
)
QUERY_DESCRIPTIONS = {
    "all": f"The service's tasks, active and completed, in task id order. {_PAGING}",
    "active": f"The service's tasks not completed yet, in task id order. {_PAGING}",
    "completed": f"The service's completed tasks, in task id order. {_PAGING}",
}

READY_RESPONSES: Responses = {
    200: {"model": ReadyBody, "description": "Ready."},
    503: _error("Not ready: `errors` names what does not answer (kafka, postgresql).", RETRY_AFTER),
}

PARAMETER_SCHEMAS: dict[str, dict[str, Any]] = {
    "service_id": {"type": "integer", "minimum": 1, "maximum": INT64_MAX},
    "task_id": {"type": "integer", "minimum": 1, "maximum": INT32_MAX},
    "state_id": {"type": "integer", "minimum": INT32_MIN, "maximum": INT32_MAX},
    "limit": {
        "type": "integer",
        "minimum": 1,
        "maximum": QUERY_LIMIT_MAX,
        "default": QUERY_LIMIT_DEFAULT,
    },
    "after": {"type": "integer", "minimum": 0, "maximum": INT32_MAX},
    "extension_name": {"type": "string", "minLength": 1, "maxLength": 256},
    "extensions": {"type": "array", "items": {"type": "string"}},
    "task_types": {"type": "array", "items": {"type": "string"}},
}
"""What the parameters the routes read as text (to answer their own 400s) really take; the
repeatable ones are arrays of strings (FastAPI would say "or null", which no query string is)."""

IDEMPOTENCY_KEY_PARAMETER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Becomes the event id: a retry with the same key gets the same answer. "
    f"1..{MAX_ID_LENGTH} printable ASCII characters; a quoted string means its content.",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH, "pattern": "^[ -~]+$"},
}


def _body_extra(description: str, schema: str) -> dict[str, Any]:
    return {
        "parameters": [IDEMPOTENCY_KEY_PARAMETER],
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        },
    }


WRITES: Mapping[EventKind, dict[str, Any]] = {
    EventKind.START: {
        "responses": _START_RESPONSES,
        "openapi_extra": _body_extra(
            "The Task Start Event, published untouched as the event's data.", "TaskStartEvent"
        ),
    },
    EventKind.END: {
        "responses": _END_RESPONSES,
        "openapi_extra": _body_extra(
            "The Task End Event, published untouched as the event's data.", "TaskEndEvent"
        ),
    },
    EventKind.EXTENSION: {
        "responses": _EXTENSION_RESPONSES,
        "openapi_extra": _body_extra(
            "The extension's new whole value (an object, or an array of objects), published "
            "untouched as the event's data.",
            "TaskExtensionValue",
        ),
    },
}
"""Each write route's documented answers and body, as arguments of its route decorator."""
BODY_SCHEMAS: tuple[type[BaseModel], ...] = (TaskStartEvent, TaskEndEvent, TaskExtensionValue)
"""The request bodies' models, in components/schemas under their own names."""

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/asyncapi.json"})
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
The Genesys Context Services task operations over Kafka request-reply: Start Task (CV.WS.SRV.8),
Complete Task (CV.WS.SRV.9) and Update Task Extension (CV.WS.SRV.18) are published as events and
answered from the consumer's reply; Query Task by ID (CV.WS.SRV.16) and Query Tasks
(CV.WS.SRV.13) read the tasks database. See docs/http-api.md.

Every 4xx/5xx body is an `ErrorBody` (`message`, `exception`, `errors`). Any path not listed here
answers 404 (components/responses/NotFound); another method on a listed path answers 405 with an
`Allow` header (components/responses/MethodNotAllowed). Any request may get 408, 414 or 431 when
it passes the bridge's bounds (components/responses); every operation but the health checks
answers 503 with `Retry-After` while UCS_BRIDGE_MAX_PENDING_REQUESTS requests are in progress.

Tenants: with UCS_TENANTS set, every task operation requires the `ContactCenterId` header (400
with the documented messages when it is missing or unknown), and another tenant's task or request
is exactly an unknown one. Without it, `ContactCenterId` and `GroupId` are ignored.

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


def _parameters(operation: dict[str, Any], *, tenants: bool) -> None:
    """The real schemas of the parameters read as text; `ContactCenterId` required when
    tenants are configured."""
    for parameter in operation.get("parameters", []):
        name = parameter["name"]
        if name in PARAMETER_SCHEMAS and parameter["in"] in {"path", "query"}:
            parameter["schema"] = dict(PARAMETER_SCHEMAS[name])
        elif parameter["in"] == "header" and name in {TENANT_HEADER, GROUP_HEADER}:
            parameter["schema"] = {"type": "string"}
            if name == TENANT_HEADER and tenants:
                parameter["required"] = True
                parameter["schema"]["minLength"] = 1


def _document(app: FastAPI, *, secured: bool, tenants: bool) -> dict[str, Any]:
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
            _parameters(operation, tenants=tenants)
    for model in BODY_SCHEMAS:
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(body.pop("$defs", {}))
        schemas[model.__name__] = body
    document["components"]["responses"] = _SHARED_RESPONSES
    if secured:
        _secure(document)
    return document


def install_openapi(app: FastAPI, *, secured: bool = False, tenants: bool = False) -> None:
    """Serve our OpenAPI document (built once, on first request) at /openapi.json; `secured`:
    authentication is on (the security schemes and 401 are declared); `tenants`: tenants are
    configured (`ContactCenterId` is required)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app, secured=secured, tenants=tenants)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override
