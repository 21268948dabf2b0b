"""Cheap checks of an HTTP request, before anything is published (no I/O here).

The request rules are the shared ones (`schemas.validation.validate_event`, for starts, ends
and extension updates alike): the bridge refuses what the consumer would refuse, with the same
messages, and publishes only what it accepted, byte for byte.

Decisions (docs/http-api.md repeats them):
- Content types: `application/json` and `application/<anything>+json`, with or without
  `charset=utf-8` (JSON is UTF-8: any other charset is a 415). CloudEvents' own JSON types are a
  415: the HTTP body is the event's data, not a structured CloudEvent. A request *without* a
  Content-Type is read as JSON (minimal clients send none); any other type is a 415 (including
  curl's default for `-d`, application/x-www-form-urlencoded).
- `Idempotency-Key`: 1..256 printable ASCII characters, once; an RFC 8941 quoted string
  (`"abc"`, as the IETF draft writes it) means the same key as the bare `abc`.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Sequence
from urllib.parse import unquote_to_bytes

from producer_tools.bridge.errors import BadRequestError
from schemas.replies import ErrorCode, FieldError
from schemas.task_start import Limits, TaskStartValidationError
from schemas.validation import EventKind, body_too_large
from schemas.wire import MAX_ID_LENGTH

IDEMPOTENCY_KEY = "Idempotency-Key"
_CLOUDEVENTS_TYPES = ("application/cloudevents+json", "application/cloudevents-batch+json")
_UTF8 = ("utf-8", "utf8")


class RequestHeaders:
    """A request's headers by name, from one pass over the ASGI list; the first value wins, as
    with Starlette's `Headers.get`. Starlette's lookup scans the list again for every name and
    raises a KeyError for each absent one: the start route reads half a dozen names, most of
    them absent, and that came to ~3 us of its CPU per request."""

    __slots__ = ("_first", "_raw")

    def __init__(self, raw: Sequence[tuple[bytes, bytes]]) -> None:
        self._raw = raw
        first: dict[bytes, bytes] = {}
        for name, value in self._raw:  # ASGI names are lower-case
            first.setdefault(name, value)
        self._first = first

    def get(self, name: str) -> str | None:
        """The first value of `name` (any case), decoded as latin-1, or None."""
        value = self._first.get(name.lower().encode("latin-1"))
        return None if value is None else value.decode("latin-1")

    def getlist(self, name: str) -> list[str]:
        """Every value of `name` (any case), in order."""
        key = name.lower().encode("latin-1")
        return [value.decode("latin-1") for found, value in self._raw if found == key]


def _unsupported(message: str) -> TaskStartValidationError:
    return TaskStartValidationError(
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        [FieldError(field="Content-Type", problem=message)],
        f"Unsupported media type: {message}.",
    )


@functools.lru_cache(maxsize=32)
def check_content_type(value: str | None) -> None:
    """Refuse (415) a body that is not declared JSON; a missing Content-Type counts as JSON.
    Callers send the same few values: an accepted one is remembered (a refusal is not: its
    exception is raised anew each time)."""
    if value is None or not value.strip():
        return
    media_type, *params = (part.strip() for part in value.split(";"))
    media_type = media_type.lower()
    if media_type in _CLOUDEVENTS_TYPES:
        raise _unsupported(
            f"{media_type} (a structured CloudEvent) is not accepted: send the event's data "
            "itself (the Task Start or End Event, the extension value) as application/json"
        )
    is_json = media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )
    if not is_json:
        shown = media_type.encode("ascii", "backslashreplace").decode()[:100]
        raise _unsupported(
            f"the body must be application/json (or application/*+json), got {shown}"
        )
    for param in params:
        name, _, raw = param.partition("=")
        charset = raw.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in _UTF8:
            raise _unsupported(f"JSON is UTF-8, got charset={charset[:40]}")


def check_declared_length(
    value: str | None, limits: Limits, kind: EventKind = EventKind.START
) -> None:
    """Refuse (413) a body whose Content-Length is over the limit, before reading any of it."""
    if value is None:
        return
    try:
        length = int(value)
    except ValueError:
        raise BadRequestError.field("Content-Length", "must be a decimal integer") from None
    if length > limits.max_body_bytes:
        raise body_too_large(kind, f"Content-Length is {length} bytes", limits)


async def read_body(
    chunks: AsyncIterator[bytes], limits: Limits, kind: EventKind = EventKind.START
) -> bytes:
    """The whole body, refused (413) as soon as it grows past the limit: never read unbounded."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise body_too_large(kind, f"more than {limits.max_body_bytes} bytes were sent", limits)
        parts.append(chunk)
    return b"".join(parts)


def _id_problem(value: str) -> str | None:
    """What is wrong with an event id (an Idempotency-Key, or the id in a status URL)."""
    if not value:
        return "must not be empty"
    if len(value) > MAX_ID_LENGTH:
        return f"must be at most {MAX_ID_LENGTH} characters long, got {len(value)}"
    if not all(" " <= c <= "~" for c in value):
        return "must hold printable ASCII characters only (0x20-0x7E)"
    return None


def idempotency_key(values: Sequence[str]) -> str | None:
    """The `Idempotency-Key` header's key (which becomes the event id), or None when absent."""
    if not values:
        return None
    if len(values) > 1:
        raise BadRequestError.field(IDEMPOTENCY_KEY, "must be sent once")
    key = values[0].strip(" \t")
    if len(key) >= 2 and key[0] == key[-1] == '"' and not any(c in key[1:-1] for c in '"\\'):
        key = key[1:-1]
    if (problem := _id_problem(key)) is not None:
        raise BadRequestError.field(IDEMPOTENCY_KEY, problem)
    return key


def check_event_id(event_id: str) -> None:
    """Refuse (400) a request id no bridge request can have: every id the bridge publishes is
    an Idempotency-Key or a uuid, so this catches what the database could not even compare
    (NUL, invalid UTF-8 percent-encodings, which arrive as U+FFFD, over-long ids)."""
    if (problem := _id_problem(event_id)) is not None:
        raise BadRequestError.field("event_id", problem)


def check_utf8_path(raw_path: bytes, field: str) -> None:
    """Refuse (400 naming `field`, the path's one free-text part) a path whose percent-encodings
    are not UTF-8: the router decodes them to U+FFFD, which names something else than was sent."""
    try:
        unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequestError.field(field, "must be UTF-8 once percent-decoded") from None
