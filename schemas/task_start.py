"""The Task Start Event (HTTP body == event data) and its rules, per the Start Task contract.

`parse_task_start` is the one entry point: raw bytes or an already-decoded JSON value in, a
validated `TaskStartEvent` out, or a `TaskStartValidationError` carrying every problem found.

Decisions beyond the reference (user-facing docs repeat them):
- An explicit JSON `null` for a standard field is invalid ("must not be null"): omit the field.
- Integers are JSON integers only; "long or string" fields take a 64-bit JSON integer or a
  non-empty string. Integers orjson cannot keep exactly (beyond -2^63 .. 2^64-1; it reads them
  as floats) are refused wherever they appear, naming the path, when the body arrives as bytes.
- Anything that validates can be stored in PostgreSQL text/jsonb: no U+0000 in any string or
  key at any depth, no NaN/Infinity, nesting at most `MAX_NESTING_DEPTH` levels.
- Duplicate keys: the last one wins (orjson's behaviour, as most JSON parsers).
- Error paths are dotted, with array indices in brackets: `Survey.question1`, `Proposal[0].price`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final, Self

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    field_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails

from schemas._json_errors import describe_decode_error, display, json_type, render_path, summarise
from schemas._json_walk import (
    MAX_NESTING_DEPTH,
    Problem,
    big_int_problems,
    string_problem,
    value_problems,
)
from schemas._task_fields import (
    CONTEXT_LIMITS,
    DEFAULT_LIMITS,
    ERROR_TYPE,
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    INT64_MIN,
    Duration,
    Int32,
    Limits,
    LongOrString,
    Text,
    Timestamp,
    problem,
)
from schemas.replies import ErrorBody, ErrorCode, FieldError

__all__ = [
    "DEFAULT_LIMITS",
    "INT32_MAX",
    "INT32_MIN",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_NESTING_DEPTH",
    "MAX_REPORTED_ERRORS",
    "REFERENCE_EXAMPLE",
    "RESERVED_ATTACHED_KEYS",
    "SERVICE_ID_MAX",
    "STANDARD_FIELDS",
    "Limits",
    "TaskStartEvent",
    "TaskStartValidationError",
    "format_timestamp",
    "parse_service_id",
    "parse_task_start",
]


RESERVED_ATTACHED_KEYS: Final = frozenset({"task_id", "service_id", "started", "extensions"})
"""Attached-data keys refused because they would shadow the task's own fields on reads."""

MAX_REPORTED_ERRORS: Final = 100
"""At most this many `FieldError`s go into one error body; the message gives the total."""

_CONTEXT_SHALLOW = "_attached_data_prechecked"
_RESERVED = "is a reserved name: it would shadow the task's own field of that name on reads"
# Digits to "0", everything else to " ": a run of 19 zeros then means a 19+ digit number (or
# digits inside a string), the only way to write an integer orjson cannot keep. 20x faster than
# a regex search.
_DIGIT_RUNS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_DIGIT_RUN = b"0" * 19
SERVICE_ID_MAX: Final = INT64_MAX
_SERVICE_ID_PROBLEM = f"must be a decimal integer between 1 and {SERVICE_ID_MAX}"


class TaskStartValidationError(Exception):
    """A task-start request refused for bad input: the error reply or 4xx it becomes."""

    def __init__(
        self, code: ErrorCode, errors: list[FieldError], message: str | None = None
    ) -> None:
        self.code = code
        self.errors = errors
        self.message = message or summarise(
            "Invalid task-start event", [(e.field, e.problem) for e in errors]
        )
        super().__init__(code, errors, self.message)

    def __str__(self) -> str:
        return self.message

    @property
    def status(self) -> int:
        """The HTTP status for this error."""
        return self.code.http_status

    def body(self) -> ErrorBody:
        """The error body (`message`, `exception`, `errors`) for the reply or HTTP response."""
        return ErrorBody(message=self.message, errors=self.errors)


REFERENCE_EXAMPLE: Final[dict[str, Any]] = {
    "interaction_id": "42",
    "est_duration": 460,
    "state_id": 24,
    "task_type": "customer info",
    "Survey": {
        "url": "http://ourServer/storage/userAnswers",
        "question1": 7,
        "question2": True,
        "question3": "will be better with cable tv and on-demand video",
    },
    "Proposal": [
        {"car type": "cabriolet", "price": 25000, "seats": 2, "comments": "200 cv, hardtop"},
        {"car type": "S.U.V.", "price": 70000, "seats": 8, "comments": "4wd, leather seats"},
    ],
}
"""The reference's own example body, corrected (see the contract)."""


def _json_schema_extra(schema: dict[str, Any]) -> None:
    # Absent fields are simply absent: `null` is refused, so no `"default": null` either.
    for prop in schema.get("properties", {}).values():
        prop.pop("default", None)
    schema["propertyNames"] = {"not": {"enum": sorted(RESERVED_ATTACHED_KEYS)}}
    schema["examples"] = [REFERENCE_EXAMPLE]


class TaskStartEvent(BaseModel):
    """A Task Start Event: the standard fields plus attached data (every other key).

    All fields are optional; an explicit `null` is refused (omit the field instead). Attached
    data is kept verbatim and in order; `task_id`, `service_id`, `started` and `extensions` are
    reserved. Validate bodies with `parse_task_start`, which also enforces the size caps.
    """

    model_config = ConfigDict(
        extra="allow",
        frozen=True,
        json_schema_extra=_json_schema_extra,
        title="TaskStartEvent",
    )

    state_id: Int32 = Field(None, description="Id of the state the task belongs to (32-bit).")
    task_type: LongOrString = Field(
        None, description="Task type business-attribute value: a 64-bit id or a non-empty name."
    )
    session_id: Text = Field(None, description="Related business/orchestration session id.")
    interaction_id: Text = Field(None, description="Related interaction id (a JSON string).")
    application_type: LongOrString = Field(
        None, description="Application type business-attribute value: a 64-bit id or a name."
    )
    application_id: Int32 = Field(None, description="DB id of the calling application (32-bit).")
    resource_type: LongOrString = Field(
        None, description="Resource type business-attribute value: a 64-bit id or a name."
    )
    resource_id: Int32 = Field(None, description="DB id of the resource (32-bit).")
    media_type: LongOrString = Field(
        None, description="Media type business-attribute value (e.g. email, voice, chat)."
    )
    est_duration: Duration = Field(
        None, description="Estimated duration in seconds, 0 .. 2147483647."
    )
    timestamp: Timestamp = Field(
        None,
        description="Start time with an explicit offset (RFC 3339); stored in UTC to the "
        "millisecond and rendered `2010-05-20T15:41:52.380Z`. Set by the server when absent.",
    )

    @property
    def attached_data(self) -> dict[str, Any]:
        """The attached data (every non-standard key), in the order sent, values as decoded."""
        return dict(self.__pydantic_extra__ or {})

    @field_serializer("timestamp")
    def _render_timestamp(self, value: datetime | None) -> str | None:
        return None if value is None else format_timestamp(value)

    @model_validator(mode="wrap")
    @classmethod
    def _check_attached_data(
        cls, data: Any, handler: ModelWrapValidatorHandler[Self], info: ValidationInfo
    ) -> Self:
        if not isinstance(data, dict):
            return handler(data)
        deep = not (info.context and info.context.get(_CONTEXT_SHALLOW))
        problems = _attached_problems(data, deep=deep)
        if deep and not all(isinstance(key, str) for key in data):  # reported once, above
            data = {key: value for key, value in data.items() if isinstance(key, str)}
        try:
            event = handler(data)
        except ValidationError as exc:
            if not problems:
                raise
            raise _merged(cls.__name__, exc, problems) from None
        if problems:
            raise _merged(cls.__name__, None, problems)
        return event


STANDARD_FIELDS: Final = frozenset(TaskStartEvent.model_fields)
"""The standard field names; every other key is attached data."""


def _attached_problems(data: dict[Any, Any], *, deep: bool) -> list[Problem]:
    if not deep and RESERVED_ATTACHED_KEYS.isdisjoint(data):
        return []
    problems: list[Problem] = []
    for key, value in data.items():
        if key in STANDARD_FIELDS:
            continue
        if not isinstance(key, str):
            problems.append(((repr(key),), "is a key that is not a string"))
        elif key in RESERVED_ATTACHED_KEYS:
            problems.append(((key,), _RESERVED))
        elif deep:
            key_problem = string_problem(key)
            if key_problem is not None:
                problems.append(((key,), f"is a key that {key_problem}"))
            else:
                value_problems((key,), value, problems)
    return problems


def _translate(error: Any) -> str:
    if error["type"] == ERROR_TYPE:
        return str(error["ctx"]["problem"])
    return str(error["msg"])  # pydantic's own text (no URL): only for misuse of the model


def _merged(title: str, exc: ValidationError | None, problems: list[Problem]) -> ValidationError:
    found = exc.errors(include_url=False) if exc is not None else []
    details = [
        InitErrorDetails(type=problem(_translate(e)), loc=e["loc"], input=e["input"]) for e in found
    ]
    details += [InitErrorDetails(type=problem(text), loc=loc, input=None) for loc, text in problems]
    return ValidationError.from_exception_data(title, details)


def _invalid(problems: list[Problem], order: dict[Any, int]) -> TaskStartValidationError:
    last = len(order)
    problems.sort(key=lambda p: order.get(p[0][0], last) if p[0] else last)
    errors = [FieldError(field=render_path(loc), problem=text) for loc, text in problems]
    message = summarise("Invalid task-start event", [(e.field, e.problem) for e in errors])
    if len(errors) > MAX_REPORTED_ERRORS:
        message = (
            f"{message[:-1]} ({len(errors)} problems, the first {MAX_REPORTED_ERRORS} listed)."
        )
    return TaskStartValidationError(ErrorCode.INVALID_FIELD, errors[:MAX_REPORTED_ERRORS], message)


def _whole_body(code: ErrorCode, message: str) -> TaskStartValidationError:
    return TaskStartValidationError(code, [FieldError(field="", problem=message)], message)


def _too_large(size: int, limits: Limits, what: str) -> TaskStartValidationError:
    return _whole_body(
        ErrorCode.TOO_LARGE,
        f"The task-start event is too large: {size} bytes{what}, "
        f"the limit is {limits.max_body_bytes} bytes.",
    )


def parse_task_start(data: bytes | Any, limits: Limits = DEFAULT_LIMITS) -> TaskStartEvent:
    """Validate one Task Start Event, or raise TaskStartValidationError with every problem.

    `data` is the raw body (bytes, as on HTTP and binary-mode Kafka) or an already-decoded
    JSON value (a structured CloudEvent's `data`).
    """
    early: list[Problem] = []
    shallow, serialisable = False, True
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        if len(raw) > limits.max_body_bytes:
            raise _too_large(len(raw), limits, "")
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _whole_body(ErrorCode.MALFORMED_JSON, describe_decode_error(raw, exc)) from None
        # orjson output holds only JSON types and finite floats; U+0000 needs a `\u0000` escape
        # and depth needs brackets, so a body without them needs no deep walk.
        shallow = b"\\u0000" not in raw and raw.count(b"{") + raw.count(b"[") <= MAX_NESTING_DEPTH
        if _LONG_DIGIT_RUN in raw.translate(_DIGIT_RUNS):
            early = big_int_problems(raw, value)
    else:
        value = data
        try:
            size = len(orjson.dumps(value))
        except TypeError:  # not JSON-serialisable: the walk below names what and where
            size, serialisable = 0, False
        if size > limits.max_body_bytes:
            raise _too_large(size, limits, " as JSON")
    if not isinstance(value, dict):
        raise _whole_body(
            ErrorCode.NOT_AN_OBJECT,
            f"The task-start event must be a JSON object, got {json_type(value)}.",
        )
    context = {CONTEXT_LIMITS: limits, _CONTEXT_SHALLOW: shallow}
    try:
        event = TaskStartEvent.model_validate(value, context=context)
    except ValidationError as exc:
        problems = [(tuple(e["loc"]), _translate(e)) for e in exc.errors(include_url=False)]
    else:
        if not early and serialisable:
            return event
        problems = [] if early else [((), "the event is not representable as JSON")]
    overridden = {loc for loc, _ in early}
    problems = early + [p for p in problems if p[0] not in overridden]
    raise _invalid(problems, {key: index for index, key in enumerate(value)})


def parse_service_id(raw: str | int | None) -> int:
    """The 64-bit service id (1 .. 2^63-1) from a decimal string or a JSON integer."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        if 1 <= raw <= SERVICE_ID_MAX:
            return int(raw)
        got = str(raw) if abs(raw) < 10**40 else "a larger number"
    elif isinstance(raw, str):
        if raw.isascii() and raw.isdigit() and len(raw) <= 19 and not raw.startswith("0"):
            number = int(raw)
            if number <= SERVICE_ID_MAX:
                return number
        got = f"'{display(raw)}'"
        if raw.isascii() and raw.isdigit() and raw.startswith("0") and raw.strip("0"):
            got += " (write it without leading zeros)"
    else:
        got = "nothing" if raw is None else json_type(raw)
    text = f"{_SERVICE_ID_PROBLEM}, got {got}"
    raise TaskStartValidationError(
        ErrorCode.INVALID_SERVICE_ID,
        [FieldError(field="service_id", problem=text)],
        f"Invalid service id: service_id {text}.",
    )


def format_timestamp(value: datetime) -> str:
    """`value` in the contract's form, UTC to the millisecond: `2010-05-20T15:41:52.380Z`."""
    if value.tzinfo is UTC:  # the common case (asyncpg and our parser give UTC): one call
        return value.isoformat(timespec="milliseconds")[:-6] + "Z"
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("format_timestamp needs a timezone-aware datetime")
    utc = value.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="milliseconds") + "Z"
