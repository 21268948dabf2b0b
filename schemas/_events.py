"""What the task events share: the model base, the derivation from the field tuples, parsing.

A task event (`TaskStartEvent`, `TaskEndEvent`) is an `EventModel` built by `derive_event_model`
from its tuple in `schemas.fields`; `parse_event` is the body check every event goes through:
raw bytes or an already-decoded JSON value in, a validated model out, or one
`EventValidationError` carrying every problem found. `decode_body` is its first half, shared
with the extension-update body. A common valid body is checked by pydantic-core alone
(`native_validator`); the model's Python checks run for everything else and name the problems.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Final, NamedTuple, Self, TypeVar

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    create_model,
    model_validator,
)
from pydantic_core import InitErrorDetails, SchemaValidator

from schemas._json_errors import describe_decode_error, json_type, render_path, summarise
from schemas._json_walk import (
    MAX_NESTING_DEPTH,
    Problem,
    big_int_problems,
    string_problem,
    value_problems,
)
from schemas._task_fields import CONTEXT_LIMITS, ERROR_TYPE, field_type, native_schema, problem
from schemas.errors import MAX_REPORTED_ERRORS, EventValidationError, whole_body
from schemas.fields import StandardField, names, reserved_attached_keys
from schemas.limits import Limits
from schemas.replies import ErrorCode, FieldError

RESERVED_PROBLEM: Final = (
    "is a reserved name: it would shadow the task's own field of that name on reads"
)
_CONTEXT_SHALLOW = "_attached_data_prechecked"
# One pass over the raw body tells what a deep walk would find, at C speed: digits become "0",
# `{` and `[` both "[", a backslash and "u" stay, everything else a space. A run of 19 zeros then
# means a 19+ digit number (or digits inside a string), the only way to write an integer orjson
# cannot keep (20x faster than a regex search); "[" counts the brackets (depth); and a U+0000
# needs a `\u0000` escape (`\u1234` reads so too: a deep walk then finds nothing, correctly).
_SHAPE = bytes(
    0x30 if 0x30 <= byte <= 0x39 else 0x5B if byte in b"{[" else byte if byte in b"\\u" else 0x20
    for byte in range(256)
)
_LONG_DIGIT_RUN = b"0" * 19
RAW_TYPES = (bytes, bytearray, memoryview)


@dataclass(frozen=True, slots=True)
class EventRules:
    """What one kind of event is: its name for people, standard fields and reserved keys."""

    what: str
    """How messages name it: `task-start event`."""
    fields: tuple[StandardField, ...]
    examples: tuple[dict[str, Any], ...] = ()
    standard: frozenset[str] = field(init=False)
    reserved: frozenset[str] = field(init=False)
    """Attached-data keys refused (see `fields.reserved_attached_keys`)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "standard", frozenset(names(self.fields)))
        object.__setattr__(self, "reserved", reserved_attached_keys(self.fields))


def _json_schema_extra(schema: dict[str, Any], model: type[Any]) -> None:
    rules: EventRules | None = getattr(model, "event_rules", None)
    if rules is None:
        return
    # Absent fields are simply absent: `null` is refused, so no `"default": null` either.
    for prop in schema.get("properties", {}).values():
        prop.pop("default", None)
    schema["propertyNames"] = {"not": {"enum": sorted(rules.reserved)}}
    if rules.examples:
        schema["examples"] = list(rules.examples)


class EventModel(BaseModel):
    """A task event: its standard fields (derived from `event_rules`) plus attached data.

    All fields are optional; an explicit `null` is refused (omit the field instead). Attached
    data (every other key) is kept verbatim and in order; reserved keys are refused.
    """

    model_config = ConfigDict(extra="allow", frozen=True, json_schema_extra=_json_schema_extra)

    event_rules: ClassVar[EventRules]

    @property
    def attached_data(self) -> dict[str, Any]:
        """The attached data (every non-standard key), in the order sent, values as decoded."""
        return dict(self.__pydantic_extra__ or {})

    @model_validator(mode="wrap")
    @classmethod
    def _check_attached_data(
        cls, data: Any, handler: ModelWrapValidatorHandler[Self], info: ValidationInfo
    ) -> Self:
        if not isinstance(data, dict):
            return handler(data)
        deep = not (info.context and info.context.get(_CONTEXT_SHALLOW))
        problems = _attached_problems(cls.event_rules, data, deep=deep)
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


if TYPE_CHECKING:  # the static view of what the derived models share (see test_fields.py)

    class SharedFields(EventModel):
        """The standard fields both task events have (for type checkers only)."""

        state_id: int | None = None
        task_type: int | str | None = None
        session_id: str | None = None
        interaction_id: str | None = None
        application_type: int | str | None = None
        application_id: int | None = None
        resource_type: int | str | None = None
        resource_id: int | None = None
        media_type: int | str | None = None
        timestamp: datetime | None = None


M = TypeVar("M", bound=EventModel)


def derive_event_model(name: str, doc: str, rules: EventRules, module: str) -> type[EventModel]:
    """The model class of one event: a field per standard field, in order, with its rules."""
    definitions: dict[str, Any] = {
        f.name: (field_type(f), Field(None, description=f.description)) for f in rules.fields
    }
    model = create_model(name, __base__=EventModel, __module__=module, __doc__=doc, **definitions)
    model.event_rules = rules
    return model


def _attached_problems(rules: EventRules, data: dict[Any, Any], *, deep: bool) -> list[Problem]:
    if not deep and rules.reserved.isdisjoint(data):
        return []
    problems: list[Problem] = []
    for key, value in data.items():
        if key in rules.standard:
            continue
        if not isinstance(key, str):
            problems.append(((repr(key),), "is a key that is not a string"))
        elif key in rules.reserved:
            problems.append(((key,), RESERVED_PROBLEM))
        elif deep:
            key_problem = string_problem(key)
            if key_problem is not None:
                problems.append(((key,), f"is a key that {key_problem}"))
            else:
                value_problems((key,), value, problems)
    return problems


def translate(error: Any) -> str:
    """The text for people of one pydantic error dict."""
    if error["type"] == ERROR_TYPE:
        return str(error["ctx"]["problem"])
    return str(error["msg"])  # pydantic's own text (no URL): only for misuse of the model


def _merged(title: str, exc: ValidationError | None, problems: list[Problem]) -> ValidationError:
    found = exc.errors(include_url=False) if exc is not None else []
    details = [
        InitErrorDetails(type=problem(translate(e)), loc=e["loc"], input=e["input"]) for e in found
    ]
    details += [InitErrorDetails(type=problem(text), loc=loc, input=None) for loc, text in problems]
    return ValidationError.from_exception_data(title, details)


def invalid(what: str, problems: list[Problem], order: dict[Any, int]) -> EventValidationError:
    """The 400 for `problems`, in the order of the body's keys (`order`), capped."""
    last = len(order)
    problems.sort(key=lambda p: order.get(p[0][0], last) if p[0] else last)
    errors = [FieldError(field=render_path(loc), problem=text) for loc, text in problems]
    message = summarise(f"Invalid {what}", [(e.field, e.problem) for e in errors])
    if len(errors) > MAX_REPORTED_ERRORS:
        message = (
            f"{message[:-1]} ({len(errors)} problems, the first {MAX_REPORTED_ERRORS} listed)."
        )
    return EventValidationError(ErrorCode.INVALID_FIELD, errors[:MAX_REPORTED_ERRORS], message)


def too_large(what: str, how_large: str, limits: Limits) -> EventValidationError:
    """The 413 for a body over `limits.max_body_bytes`: `The <what> is too large: <how_large>,
    the limit is N bytes.`"""
    return whole_body(
        ErrorCode.TOO_LARGE,
        f"The {what} is too large: {how_large}, the limit is {limits.max_body_bytes} bytes.",
    )


@dataclass(slots=True)
class Decoded:
    """A body decoded within the size cap, with what its raw form already told."""

    value: Any
    shallow: bool = False
    """True when the raw bytes prove no deep walk of attached data is needed."""
    early: list[Problem] = field(default_factory=list)
    """Integers beyond 64 bits that orjson read as floats (found in the raw bytes)."""
    serialisable: bool = True


class Scanned(NamedTuple):
    """A JSON value orjson decoded from bytes that `scanned_clean` passed, such as a structured
    CloudEvent's `data` decoded with its record: `decode_body` takes it as it takes raw bytes that
    need no deep walk (and `parse_event` may check it natively)."""

    value: Any
    size: int | None = None
    """`len(orjson.dumps(value))` when the caller has that JSON already (`produce` sends it),
    so that the size cap is checked without encoding the value again."""


def scanned_clean(raw: bytes) -> bool:
    """Whether every JSON value orjson decodes from `raw`, or from a part of it, needs no deep
    walk: no `\\u0000` escape (orjson refuses a raw U+0000 and any lone surrogate), no run of 19
    digits (the only way to write an integer orjson would read as a float) and at most
    MAX_NESTING_DEPTH brackets in all (so no part nests deeper)."""
    shape = raw.translate(_SHAPE)
    return _LONG_DIGIT_RUN not in shape and _shallow(shape)


def _shallow(shape: bytes) -> bool:
    # orjson output holds only JSON types and finite floats; U+0000 needs a `\u0000` escape
    # and depth needs brackets, so a body without them needs no deep walk.
    # A backslash is rare (orjson writes text as UTF-8): looked for first, one memchr.
    escaped = b"\\" in shape and b"\\u0000" in shape
    return not escaped and shape.count(b"[") <= MAX_NESTING_DEPTH


def decode_body(data: bytes | Any, limits: Limits, what: str) -> Decoded:
    """`data` decoded (bytes) or size-checked (a decoded value, or a `Scanned` one); 413 and
    malformed JSON here."""
    if isinstance(data, RAW_TYPES):
        raw = data if type(data) is bytes else bytes(data)
        if len(raw) > limits.max_body_bytes:
            raise too_large(what, f"{len(raw)} bytes", limits)
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise whole_body(ErrorCode.MALFORMED_JSON, describe_decode_error(raw, exc)) from None
        shape = raw.translate(_SHAPE)
        shallow = _shallow(shape)
        early = []
        if _LONG_DIGIT_RUN in shape:
            early = big_int_problems(raw, value)
        return Decoded(value, shallow, early)
    shallow = type(data) is Scanned
    size = None
    if shallow:
        data, size = data
    if size is None:
        try:
            size = len(orjson.dumps(data))
        except TypeError:  # not JSON-serialisable: the walk names what and where
            return Decoded(data, serialisable=False)
    if size > limits.max_body_bytes:
        raise too_large(what, f"{size} bytes as JSON", limits)
    return Decoded(data, shallow)


def with_early(decoded: Decoded, problems: Sequence[Problem]) -> list[Problem]:
    """`problems` with the raw-bytes findings first; those replace a later one at the same path."""
    overridden = {loc for loc, _ in decoded.early}
    return decoded.early + [p for p in problems if p[0] not in overridden]


@functools.lru_cache(maxsize=64)
def native_validator(model: type[EventModel], limits: Limits) -> SchemaValidator | None:
    """`model`'s validator without a Python call but for a timestamp, compiled once per limits:
    its own core schema with each field's check replaced by `native_schema` and without the
    attached-data wrapper. For a body decoded from bytes that needs no deep walk and uses no
    reserved key (what `parse_event` makes sure of first), what it accepts the full model accepts
    with the same result, about twice as fast; what it refuses goes to the full check. None if
    the model's core schema is not the shape this knows (another pydantic): the full check then
    does everything, as it did before (test_native_validation.py fails on such an upgrade)."""
    wrapped: Any = model.__pydantic_core_schema__
    if wrapped.get("type") != "function-wrap" or wrapped["schema"].get("type") != "model":
        return None
    if wrapped["schema"]["schema"].get("type") != "model-fields":
        return None
    schema: Any = copy.deepcopy(wrapped["schema"])
    schema.pop("ref", None)
    rules = {f.name: f for f in model.event_rules.fields}
    for name, member in schema["schema"]["fields"].items():
        if member.get("type") != "model-field" or member["schema"].get("type") != "default":
            return None
        member["schema"]["schema"] = native_schema(rules[name], limits)  # inside its default
    return SchemaValidator(schema)


_UNCOMPILED: Final = object()


def parse_event(model: type[M], data: bytes | Any, limits: Limits) -> M:
    """Validate one event body against `model`, or raise EventValidationError (every problem)."""
    rules = model.event_rules
    what = rules.what
    decoded: Decoded | None = None
    if type(data) is Scanned and data.size is not None and data.size <= limits.max_body_bytes:
        value = data.value  # decoded, proven clean and measured by the caller: nothing to decode
    else:
        decoded = decode_body(data, limits, what)
        value = decoded.value
    if not isinstance(value, dict):
        raise whole_body(
            ErrorCode.NOT_AN_OBJECT, f"The {what} must be a JSON object, got {json_type(value)}."
        )
    native = None  # looked up only for a body it may take
    clean = decoded is None or (decoded.shallow and not decoded.early)
    if clean and rules.reserved.isdisjoint(value):
        native = limits.compiled.get(model, _UNCOMPILED)
        if native is _UNCOMPILED:  # the first event of `model` under these limits
            native = limits.compiled[model] = native_validator(model, limits)
    if native is not None:
        try:  # the common valid body, checked by pydantic-core alone
            event: M = native.validate_python(value)
        except ValidationError:
            pass  # not the common case, or invalid: the full check names every problem
        else:
            return event
    if decoded is None:
        decoded = Decoded(value, shallow=True)  # what decode_body says of such a body
    context = {CONTEXT_LIMITS: limits, _CONTEXT_SHALLOW: decoded.shallow}
    try:
        event = model.model_validate(value, context=context)
    except ValidationError as exc:
        problems = [(tuple(e["loc"]), translate(e)) for e in exc.errors(include_url=False)]
    else:
        if not decoded.early and decoded.serialisable:
            return event
        problems = [] if decoded.early else [((), "the event is not representable as JSON")]
    order = {key: index for index, key in enumerate(value)}
    raise invalid(what, with_early(decoded, problems), order)
