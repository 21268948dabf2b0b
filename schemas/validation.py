"""The one validation entry for every request: the consumer, the HTTP bridge and the tools call it.

`validate_event` checks what a request names (service id; task id and extension name for the
lifecycle operations) and its body together, and either returns a `ValidEvent` or raises ONE
`EventValidationError` carrying every problem found: the highest status first (a 413 before a
400), messages joined in that order. So a Kafka record, an HTTP request and a JSON line with the
same content get the same answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from schemas import extension
from schemas._events import RAW_TYPES, Scanned, parse_event, scanned_clean, too_large
from schemas.errors import EventValidationError, Problems
from schemas.extension import ExtensionUpdate, parse_extension_update
from schemas.ids import parse_service_id, parse_task_id
from schemas.limits import DEFAULT_LIMITS, Limits
from schemas.task_end import TaskEndEvent
from schemas.task_start import TaskStartEvent

__all__ = [
    "BODY_NAMES",
    "END_KIND",
    "EXTENSION_KIND",
    "START_KIND",
    "EventKind",
    "Scanned",
    "ValidEvent",
    "body_too_large",
    "scanned_clean",
    "structured_body",
    "validate_event",
]


class EventKind(StrEnum):
    """What a request asks for."""

    START = "start"
    """Start Task: a Task Start Event for a service."""
    END = "end"
    """Complete Task: a Task End Event for one task."""
    EXTENSION = "extension"
    """Update Task Extension: the new value of one extension of one task."""


START_KIND: Final = EventKind.START
END_KIND: Final = EventKind.END
EXTENSION_KIND: Final = EventKind.EXTENSION
"""EventKind's members under plain names, for the code that runs per request: on CPython 3.11
reading a member off its class (`EventKind.START`) costs ~75 ns, a module name ~15 (a request
read ~10 of them on the way through `produce` or the consumer)."""


BODY_NAMES: Final[Mapping[EventKind, str]] = MappingProxyType(
    {
        EventKind.START: TaskStartEvent.event_rules.what,
        EventKind.END: TaskEndEvent.event_rules.what,
        EventKind.EXTENSION: extension.WHAT,
    }
)
"""How messages name the body of each kind of request (`task-start event`, ...)."""


def body_too_large(
    kind: EventKind, how_large: str, limits: Limits = DEFAULT_LIMITS
) -> EventValidationError:
    """The 413 `validate_event` gives a body over the limit, for an edge that finds it so before
    it holds the whole body (the bridge: from Content-Length, or from the bytes sent so far);
    `how_large` says how it knows: `Content-Length is 2000000 bytes`."""
    return too_large(BODY_NAMES[kind], how_large, limits)


class ValidEvent(NamedTuple):
    """A request that passed validation: its ids (canonical ints) and its validated body.

    `event` is a `TaskStartEvent`, a `TaskEndEvent` or an `ExtensionUpdate` (name and value)
    for `EventKind.START`, `END` and `EXTENSION`; `task_id` is None for a start, `extension`
    is set for an extension update only. A NamedTuple: one is built per consumed record.
    """

    kind: EventKind
    service_id: int
    event: TaskStartEvent | TaskEndEvent | ExtensionUpdate
    task_id: int | None = None
    extension: str | None = None

    @property
    def start(self) -> TaskStartEvent:
        """The Task Start Event (kind START), else TypeError."""
        if not isinstance(self.event, TaskStartEvent):
            raise TypeError(f"a {self.kind} request has no Task Start Event")
        return self.event

    @property
    def end(self) -> TaskEndEvent:
        """The Task End Event (kind END), else TypeError."""
        if not isinstance(self.event, TaskEndEvent):
            raise TypeError(f"a {self.kind} request has no Task End Event")
        return self.event

    @property
    def update(self) -> ExtensionUpdate:
        """The extension update (kind EXTENSION), else TypeError."""
        if not isinstance(self.event, ExtensionUpdate):
            raise TypeError(f"a {self.kind} request has no extension update")
        return self.event


def _body(
    kind: EventKind, body: bytes | Any, limits: Limits, extension: str | None
) -> TaskStartEvent | TaskEndEvent | ExtensionUpdate:
    if kind is START_KIND:
        return parse_event(TaskStartEvent, body, limits)  # parse_task_start, one call less
    if kind is END_KIND:
        return parse_event(TaskEndEvent, body, limits)  # parse_task_end, one call less
    return parse_extension_update(extension, body, limits)


def structured_body(data: Any, record: bytes | None, clean: bool | None = None) -> Any:
    """A decoded request's `data` (`wire.Envelope.data`) as `validate_event` should take it:
    raw bytes (a binary-mode body, a `data_base64` one) as they are; a structured CloudEvent's
    decoded `data` marked `Scanned` when the bytes of the whole `record` it was decoded from
    prove that no deep walk is needed (`scanned_clean`; `clean`: its answer, when the caller
    has it already), as it is otherwise. The same checks either way; a proven body skips the
    walk and may be checked natively."""
    if record is None or isinstance(data, RAW_TYPES):
        return data
    if clean is None:
        clean = scanned_clean(record)
    return Scanned(data) if clean else data


def validate_event(
    kind: EventKind,
    service_id: str | int | None,
    body: bytes | Any,
    limits: Limits = DEFAULT_LIMITS,
    *,
    task_id: str | int | None = None,
    extension: str | None = None,
) -> ValidEvent:
    """Validate one request, or raise one EventValidationError with every problem found.

    `service_id` and `task_id` are as received (decimal text or a JSON integer; None when
    absent, which is a problem for a service id, and for a task id of END and EXTENSION);
    `body` is the raw body (bytes) or an already-decoded JSON value (`Scanned` when its bytes
    were proven clean: `structured_body`); `extension` is the
    extension name (EXTENSION only). A START with a task id or an extension name, or an END
    with an extension name, is a programming error (ValueError).
    """
    if type(kind) is not EventKind:
        kind = EventKind(kind)
    if kind is START_KIND and task_id is not None:
        raise ValueError("a start request names no task id")
    if kind is not EXTENSION_KIND and extension is not None:
        raise ValueError(f"a {kind} request names no extension")
    # Each part checked once, every problem kept. Not `Problems.check`: its call per part
    # costs a valid request ~0.6 us more than a `try` (on every consumed record); and the
    # collector is made at the first problem only (a valid request makes none).
    problems: Problems | None = None
    service: int | None = None
    task: int | None = None
    event: TaskStartEvent | TaskEndEvent | ExtensionUpdate | None = None
    try:
        service = parse_service_id(service_id)
    except EventValidationError as exc:
        problems = Problems.kept(problems, exc)
    if kind is not START_KIND:
        try:
            task = parse_task_id(task_id)
        except EventValidationError as exc:
            problems = Problems.kept(problems, exc)
    try:
        event = _body(kind, body, limits, extension)
    except EventValidationError as exc:
        problems = Problems.kept(problems, exc)
    if problems is not None:
        problems.raise_any()
    if service is None or event is None:
        raise AssertionError(f"a problem of {kind} went unreported: {service}, {task}, {event}")
    # tuple.__new__: the NamedTuple's own __new__ is a Python function (~0.25 us, this ~0.1)
    return tuple.__new__(ValidEvent, (kind, service, event, task, extension))
