"""Every error the bridge answers with, and its HTTP mapping, written once.

Each 4xx/5xx body is `schemas.replies.ErrorBody` (`message`, `exception`, `errors`), including
FastAPI's and Starlette's own 404/405/422, which are overridden here. Validation errors of the
task-start event (`schemas.task_start.TaskStartValidationError`) carry their own status (400,
413, 415). The catch-all answers JSON 500 and logs; it is a safety net, not a mapping.

No answer carries internal error text: an outage (`schemas.errors.ServiceError`) is answered
with a fixed message per dependency, and what the driver or the broker said is logged (once per
`OUTAGE_LOG_INTERVAL_S` for the same text: an outage fails every request alike). The bounds of
the connection itself (408, 414, 431 and the busy 503) are answered by `protocol`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import ClassVar

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from schemas.errors import BrokerUnavailableError, ServiceError, StorageUnavailableError
from schemas.replies import ErrorBody, FieldError
from schemas.task_start import TaskStartValidationError

log = logging.getLogger(__name__)

JSON = "application/json"
RETRY_AFTER_S = 1
"""`Retry-After` of 503 answers: the link to the broker is re-probed every second."""
BROKER_UNAVAILABLE = (
    "The Kafka broker is unavailable: retry in a moment. The request may have been published "
    "all the same: retry it with the same Idempotency-Key."
)
DATABASE_UNAVAILABLE = "The tasks database is unavailable: retry in a moment."
SERVICE_UNAVAILABLE = "A service the bridge depends on is unavailable: retry in a moment."
REFUSED = "The service cannot take this request now."
OUTAGE_LOG_INTERVAL_S = 10.0


class BridgeError(Exception):
    """An error the bridge answers with `status` and an ErrorBody; `retriable`: try again later."""

    status: ClassVar[int] = 500
    retriable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        errors: Sequence[FieldError] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.errors = list(errors)
        self.headers = dict(headers or {})

    def body(self) -> ErrorBody:
        """The JSON body of the answer."""
        return ErrorBody(message=self.message, errors=self.errors)


class BadRequestError(BridgeError):
    """400: a request parameter or header (not the event body) is invalid."""

    status = 400

    @classmethod
    def field(cls, field: str, problem: str) -> BadRequestError:
        """One invalid field or header, named in the message and in `errors`."""
        return cls(
            f"Invalid request: {field} {problem}.", [FieldError(field=field, problem=problem)]
        )


class UnauthorizedError(BridgeError):
    """401: authentication is on and the request presents no accepted token (see `auth`)."""

    status = 401


class IdempotencyKeyReusedError(BridgeError):
    """422: the Idempotency-Key already identifies another request (another service's, or
    another kind, task or extension)."""

    status = 422

    @classmethod
    def for_service(cls, key: str, owner: int, asked: int) -> IdempotencyKeyReusedError:
        """The key was first used for service `owner`, now for `asked`."""
        return cls(
            f"Idempotency-Key {key!r} was already used for a request to service {owner}, "
            f"not {asked}: use a new key for a new request.",
            [FieldError(field="Idempotency-Key", problem=f"already used for service {owner}")],
        )

    @classmethod
    def for_request(cls, key: str, other: str) -> IdempotencyKeyReusedError:
        """The key was first used for another request of the same service (`other` says
        which: another kind, another task, another extension)."""
        return cls(
            f"Idempotency-Key {key!r} was already used for {other}: use a new key for a new "
            "request.",
            [FieldError(field="Idempotency-Key", problem=f"already used for {other}")],
        )


class NotFoundError(BridgeError):
    """404: no such resource (an unknown path, task or request)."""

    status = 404


class BadReplyError(BridgeError):
    """502: the task service answered with a reply the bridge cannot read."""

    status = 502


class ReplyTimeoutError(BridgeError):
    """504: no reply came in time (the task may still be created: retry with the same key)."""

    status = 504
    retriable = True


def error_response(
    status: int, body: ErrorBody, headers: Mapping[str, str] | None = None
) -> Response:
    """The one place an error body is rendered."""
    return Response(body.model_dump_json(), status, headers=dict(headers or {}), media_type=JSON)


def _retry_after(exc: BridgeError) -> dict[str, str]:
    if exc.status == 503 and "Retry-After" not in exc.headers:
        return {**exc.headers, "Retry-After": str(RETRY_AFTER_S)}
    return exc.headers


async def _bridge_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, BridgeError)  # noqa: S101 - registered for this type only
    return error_response(exc.status, exc.body(), _retry_after(exc))


def internal_detail(exc: BaseException) -> str:
    """An error and its causes as `Type: text; caused by Type: text` (for logs only)."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(parts) < 4:
        text = str(seen)
        parts.append(f"{type(seen).__name__}: {text}" if text else type(seen).__name__)
        seen = seen.__cause__ or seen.__context__
    return "; caused by ".join(parts)


class OutageLog:
    """Logs each distinct outage text at most once per `interval_s`, with how many were not."""

    def __init__(self, interval_s: float = OUTAGE_LOG_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._seen: dict[str, tuple[float, int]] = {}

    def warning(self, detail: str, where: str) -> None:
        """Log `detail` (the error) seen at `where` (the request), unless logged lately."""
        now = time.monotonic()
        last, hidden = self._seen.get(detail, (float("-inf"), 0))
        if now - last < self._interval_s:
            self._seen[detail] = (last, hidden + 1)
            return
        if len(self._seen) > 100:  # texts vary little; never let them pile up
            self._seen.clear()
        self._seen[detail] = (now, 0)
        more = f" ({hidden} more like it since the last report)" if hidden else ""
        log.warning("503 on %s: %s%s", where, detail, more)


OUTAGES = OutageLog()
"""Where every outage a request meets is logged."""


async def _unavailable(request: Request, exc: Exception) -> Response:
    """A dependency (broker or database) is away: 503, try again in a moment."""
    assert isinstance(exc, ServiceError)  # noqa: S101 - registered for this type only
    raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
    where = f"{request.method} {raw_path.decode('ascii', 'backslashreplace')}"  # as sent
    if not exc.retriable:
        log.error("a dependency refused %s: %s", where, internal_detail(exc))
        return error_response(503, ErrorBody(message=REFUSED))
    OUTAGES.warning(internal_detail(exc), where)
    if isinstance(exc, BrokerUnavailableError):
        message = BROKER_UNAVAILABLE
    elif isinstance(exc, StorageUnavailableError):
        message = DATABASE_UNAVAILABLE
    else:
        message = SERVICE_UNAVAILABLE
    return error_response(503, ErrorBody(message=message), {"Retry-After": str(RETRY_AFTER_S)})


async def _invalid_event(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, TaskStartValidationError)  # noqa: S101 - registered for this type only
    return error_response(exc.status, exc.body())


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's routing errors (404, 405) in our error body."""
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for this type only
    path = request.url.path
    if exc.status_code == 404:
        message = f"Not found: no resource at {path}."
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"Method not allowed: {request.method} {path}; allowed: {allowed}."
    else:
        message = f"{exc.detail} ({request.method} {path})."
    return error_response(exc.status_code, ErrorBody(message=message), exc.headers)


def _field_path(loc: Sequence[str | int]) -> str:
    return ".".join(str(part) for part in loc)


async def _request_validation(_: Request, exc: Exception) -> Response:
    """FastAPI's parameter validation (its 422) is a 400 like every other bad input."""
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this type only
    errors = [FieldError(field=_field_path(e["loc"]), problem=e["msg"]) for e in exc.errors()]
    listed = "; ".join(f"{e.field} {e.problem}" for e in errors[:5])
    return error_response(400, ErrorBody(message=f"Invalid request: {listed}.", errors=errors))


async def _disconnected(_: Request, exc: Exception) -> Response:
    # Nobody reads this answer; mapping it keeps a dropped upload out of the unexpected errors.
    return error_response(400, ErrorBody(message="The client disconnected before the body ended."))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, ErrorBody(message="Internal error: the bridge failed unexpectedly."))


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping above on `app`."""
    app.add_exception_handler(BridgeError, _bridge_error)
    app.add_exception_handler(ServiceError, _unavailable)
    app.add_exception_handler(TaskStartValidationError, _invalid_event)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(ClientDisconnect, _disconnected)
    app.add_exception_handler(Exception, _unexpected)
