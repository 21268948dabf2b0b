"""The native fast path of event validation (schemas._events.native_validator) against the full
model check: whatever it accepts, the full check accepts with the same result, in both modes,
under tight caps; and the bodies it is for do take it."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from producer_tools.tools import _events as tools_events
from producer_tools.tools._events import InvalidInputError, LinePreparer
from schemas import _events
from schemas._events import (
    _CONTEXT_SHALLOW,
    EventModel,
    Scanned,
    decode_body,
    native_validator,
)
from schemas._task_fields import CONTEXT_LIMITS
from schemas.errors import EventValidationError
from schemas.fields import Kind, reserved_attached_keys
from schemas.limits import FieldMode, Limits
from schemas.requests import TYPE_OF_KIND
from schemas.task_end import TaskEndEvent, parse_task_end
from schemas.task_start import TaskStartEvent, parse_task_start
from schemas.validation import EventKind, structured_body, validate_event

MODELS = {"start": (TaskStartEvent, parse_task_start), "end": (TaskEndEvent, parse_task_end)}
LIMITS = (
    Limits(),
    Limits(mode=FieldMode.STRICT),
    Limits(max_string_length=4),
    Limits(max_string_length=4, mode=FieldMode.STRICT),
)
BOUNDS = (-(2**63) - 1, -(2**63), -(2**31) - 1, -(2**31), -1, 0, 1, 2**31 - 1, 2**31, 2**63 - 1)
BOUNDS += (2**63, 2**64 - 1)
TIMESTAMPS = (
    "2010-05-20T15:41:52.380Z",
    "2010-05-20T15:41:52Z",
    "2010-05-20t15:41:52.380z",
    "2010-05-20T17:41:52.380123+02:00",
    "2010-05-20T15:41:52.380",
    "2010-02-30T15:41:52.380Z",
    "2010-05-20T23:59:60.000Z",
    "2010-05-20T15:41:52.380Z\n",
    "\u0662010-05-20T15:41:52.380Z",
    "2010-05-20 15:41:52.380Z",
    "2010-05-20",
    "",
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(BOUNDS),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.text(alphabet="0123456789-", max_size=21),
    st.sampled_from(("a\x00", "\x00")),
    st.sampled_from(TIMESTAMPS),
)


def at_the_cap(limits: Limits) -> st.SearchStrategy[str]:
    """Strings one short of, at and one past the length cap, in one- to four-byte characters."""
    cap = limits.max_string_length
    return st.sampled_from([c * n for c in "eé€😀" for n in (cap - 1, cap, cap + 1)])


def values(limits: Limits) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars | at_the_cap(limits),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
        ),
        max_leaves=6,
    )


def near_valid(kind: Kind, limits: Limits) -> st.SearchStrategy[Any]:
    """Values of a standard field of `kind`: mostly around what it accepts, now and then junk
    (a body reaches the native path only when every field of it passes)."""
    integers = st.sampled_from(BOUNDS) | st.integers(-(2**33), 2**33)
    texts = at_the_cap(limits) | st.text(max_size=6)
    common: st.SearchStrategy[Any] = {
        Kind.INT32: integers,
        Kind.DURATION: integers,
        Kind.TEXT: texts | integers,
        Kind.LONG_OR_STRING: texts | integers | st.just(""),
        Kind.TIMESTAMP: st.sampled_from(TIMESTAMPS),
    }[kind]
    return st.one_of(common, common, common, values(limits))


@st.composite
def bodies(draw: st.DrawFn, model: type[EventModel], limits: Limits) -> dict[str, Any]:
    fields = {f.name: f for f in model.event_rules.fields}
    body: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(sorted(fields)), unique=True)):
        body[name] = draw(near_valid(fields[name].kind, limits))
    reserved = st.sampled_from(sorted(reserved_attached_keys(())))
    extra_keys = st.one_of(st.text(max_size=5), st.text(max_size=5), st.text(max_size=5), reserved)
    for key in draw(st.lists(extra_keys, max_size=3, unique=True)):
        body.setdefault(key, draw(values(limits)))
    return body


def full_check(model: type[EventModel], value: dict[str, Any], limits: Limits, raw: bytes) -> Any:
    """What `parse_event` did before the fast path: the model with its Python validators."""
    shallow = decode_body(raw, limits, "event").shallow
    return model.model_validate(value, context={CONTEXT_LIMITS: limits, _CONTEXT_SHALLOW: shallow})


def typed(event: EventModel) -> list[tuple[str, type, Any]]:
    dumped = {**event.__dict__, **(event.__pydantic_extra__ or {})}
    return [(key, type(value), value) for key, value in dumped.items()]


Test = Callable[[str, st.DataObject, Limits], None]


def drawn(kinds: Iterable[str], examples: int) -> Callable[[Test], Any]:
    """A property test per kind: `examples` bodies drawn, each under one of LIMITS."""

    def decorate(test: Test) -> Any:
        checked = settings(max_examples=examples, suppress_health_check=[HealthCheck.too_slow])
        drawing = given(data=st.data(), limits=st.sampled_from(LIMITS))
        return pytest.mark.parametrize("kind", sorted(kinds))(checked(drawing(test)))

    return decorate


@drawn(MODELS, examples=400)
def test_what_the_native_path_accepts_the_full_check_accepts_with_the_same_result(
    kind: str, data: st.DataObject, limits: Limits
) -> None:
    model, parse = MODELS[kind]
    value = data.draw(bodies(model, limits))
    try:
        raw = orjson.dumps(value)
    except TypeError:  # a lone surrogate: no JSON text holds one
        assume(False)
    decoded = orjson.loads(raw)  # as a body arrives: decoded from bytes
    native = native_validator(model, limits)
    assert native is not None
    try:
        fast = native.validate_python(decoded)
    except ValidationError:
        fast = None
    try:
        full = full_check(model, decoded, limits, raw)
    except ValidationError:
        full = None
    taken = decode_body(raw, limits, "event").shallow and model.event_rules.reserved.isdisjoint(
        decoded
    )  # what `parse_event` makes sure of before the native path
    if fast is not None and taken:
        assert full is not None, f"{decoded} passed the native path only"
        assert typed(fast) == typed(full)
        assert fast.model_fields_set == full.model_fields_set
    # The public entry agrees with the full check either way.
    try:
        parsed = parse(raw, limits)
    except EventValidationError:
        assert full is None
    else:
        assert full is not None
        assert typed(parsed) == typed(full)
        assert parsed.model_dump_json() == full.model_dump_json()


def agree(model: type[EventModel], body: dict[str, Any], limits: Limits) -> None:
    raw = json.dumps(body, ensure_ascii=False).encode()  # orjson writes no integer past 64 bits
    decoded = orjson.loads(raw)  # and reads one as a float: a value the full check refuses
    native = native_validator(model, limits)
    assert native is not None
    try:
        fast = native.validate_python(decoded)
    except ValidationError:
        return
    full = full_check(model, decoded, limits, raw)  # raises if the native path was too lax
    assert typed(fast) == typed(full), body


@pytest.mark.parametrize("kind", sorted(MODELS))
@pytest.mark.parametrize(
    "limits", LIMITS, ids=lambda limits: f"{limits.mode}-{limits.max_string_length}"
)
def test_every_field_agrees_with_the_full_check_at_every_bound(kind: str, limits: Limits) -> None:
    model = MODELS[kind][0]
    cap = limits.max_string_length
    strings = [c * n for c in "eé€😀" for n in (0, 1, cap - 1, cap, cap + 1)]
    junk = [None, True, False, 0.0, 1.5, [], {}, [1], {"a": 1}, "24", "-1", "0x1", " 1"]
    for standard in model.event_rules.fields:
        for value in (*BOUNDS, *strings, *TIMESTAMPS, *junk):
            agree(model, {standard.name: value}, limits)


def common_body() -> bytes:
    return orjson.dumps(
        {
            "state_id": 24,
            "task_type": "customer info",
            "interaction_id": "IX42",
            "media_type": 7,
            "est_duration": 460,
            "timestamp": "2010-05-20T15:41:52.380Z",
            "Survey": {"url": "http://ourServer/storage/userAnswers", "question1": 7},
        }
    )


def test_a_common_valid_start_is_checked_by_the_native_path_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_full_check(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the full model check ran")

    monkeypatch.setattr(TaskStartEvent, "model_validate", no_full_check)
    event = parse_task_start(common_body())
    assert event.state_id == 24
    assert event.media_type == 7
    assert event.timestamp == datetime(2010, 5, 20, 15, 41, 52, 380000, tzinfo=UTC)
    assert event.timestamp.tzinfo is UTC
    assert event.attached_data == {
        "Survey": {"url": "http://ourServer/storage/userAnswers", "question1": 7}
    }


def python_calls(check: Callable[[], object]) -> list[str]:
    """The names of the Python functions `check` calls (C functions are not listed)."""
    called: list[str] = []

    def profile(frame: Any, event: str, arg: object) -> None:
        if event == "call":
            called.append(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        check()
    finally:
        sys.setprofile(None)
    return called


@pytest.mark.parametrize(
    ("stamp", "python"),
    [
        ("2010-05-20T15:41:52.380Z", False),  # the contract's form: read by pydantic-core alone
        ("2010-05-20T17:41:52.380+02:00", True),  # another offset: `_timestamp`, still native
        ("2010-05-20T15:41:52Z", True),
    ],
)
def test_the_contracts_timestamp_form_is_read_without_a_python_call(
    stamp: str, python: bool
) -> None:
    native = native_validator(TaskStartEvent, Limits())
    assert native is not None
    body = {**orjson.loads(common_body()), "timestamp": stamp}
    events: list[Any] = []
    called = python_calls(lambda: events.append(native.validate_python(body)))
    assert ("_timestamp" in called) is python, called
    assert events[0].timestamp == datetime(
        2010, 5, 20, 15, 41, 52, 380000 if "." in stamp else 0, tzinfo=UTC
    )
    assert events[0].timestamp.tzinfo is UTC  # the same object as the full check's


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"state_id": "24"}, None, None),  # genesys: a decimal string, taken by the full check
        ({"state_id": 2**31}, "state_id", "must be between"),
        ({"interaction_id": None}, "interaction_id", "must not be null"),
        ({"task_type": ""}, "task_type", "non-empty string"),
        ({"timestamp": "2010-05-20"}, "timestamp", "a date without a time"),
        ({"timestamp": "2010-02-30T15:41:52.380Z"}, "timestamp", "not a valid date-time"),
        ({"task_id": 1}, "task_id", "reserved name"),
    ],
)
def test_what_the_native_path_refuses_gets_the_full_check_and_its_wording(
    change: dict[str, Any], field: str | None, problem: str | None
) -> None:
    raw = orjson.dumps({**orjson.loads(common_body()), **change})
    if field is None:
        assert parse_task_start(raw).state_id == 24
        return
    with pytest.raises(EventValidationError) as caught:
        parse_task_start(raw)
    found = {e.field: e.problem for e in caught.value.errors}
    assert field in found, found
    assert problem is not None
    assert problem in found[field], found


def test_the_native_validator_is_compiled_once_per_model_and_limits() -> None:
    assert native_validator(TaskStartEvent, Limits()) is native_validator(TaskStartEvent, Limits())
    strict = Limits(mode=FieldMode.STRICT)
    assert native_validator(TaskStartEvent, strict) is not native_validator(TaskEndEvent, strict)


def test_limits_keep_what_was_compiled_for_them_outside_their_value() -> None:
    limits, other = Limits(max_string_length=77), Limits(max_string_length=77)
    parse_task_start(common_body(), limits)
    assert limits.compiled == {TaskStartEvent: native_validator(TaskStartEvent, limits)}
    assert other.compiled == {}
    assert limits == other  # the cache is not part of the value
    assert hash(limits) == hash(other)
    assert "compiled" not in repr(limits)
    parse_task_start(common_body(), other)  # equal limits share the compiled validator
    assert other.compiled[TaskStartEvent] is limits.compiled[TaskStartEvent]


def test_a_model_schema_of_another_shape_gets_no_native_path_and_the_full_check_does_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Unwrapped:
        __pydantic_core_schema__: ClassVar[dict[str, Any]] = {"type": "model", "schema": {}}

    assert native_validator(Unwrapped, Limits()) is None  # type: ignore[arg-type]
    expected = parse_task_start(common_body())
    monkeypatch.setattr(_events, "native_validator", lambda model, limits: None)
    assert typed(parse_task_start(common_body())) == typed(expected)
    with pytest.raises(EventValidationError):
        parse_task_start(orjson.dumps({"state_id": 2**31}))


# --- structured CloudEvents: `data` decoded with its record, proven clean by the record's bytes

KINDS = {"start": EventKind.START, "end": EventKind.END, "extension": EventKind.EXTENSION}


def outcome(kind: EventKind, body: Any, limits: Limits) -> tuple[Any, ...]:
    task_id = None if kind is EventKind.START else 7
    extension = "Survey" if kind is EventKind.EXTENSION else None
    try:
        valid = validate_event(kind, 21456878, body, limits, task_id=task_id, extension=extension)
    except EventValidationError as exc:
        return ("refused", exc.code, exc.message, tuple(exc.errors))
    event = valid.event
    if isinstance(event, EventModel):
        return ("accepted", tuple(typed(event)), event.model_dump_json())
    return ("accepted", repr(event))


def any_body(kind: str, data: st.DataObject, limits: Limits) -> Any:
    """A body drawn for `kind` (an extension update's value: a start's): near the model's
    bounds, or any JSON value."""
    model = MODELS.get(kind, (TaskStartEvent, parse_task_start))[0]
    return data.draw(bodies(model, limits) | values(limits))


def structured(data: Any) -> bytes:
    return json.dumps(
        {"specversion": "1.0", "id": "e-1", "source": "urn:t", "data": data}, ensure_ascii=False
    ).encode()


@drawn(KINDS, examples=300)
def test_a_structured_body_proven_clean_gets_the_answer_of_the_full_walk(
    kind: str, data: st.DataObject, limits: Limits
) -> None:
    value = any_body(kind, data, limits)
    record = structured(value)
    try:
        decoded = orjson.loads(record)["data"]
    except orjson.JSONDecodeError:  # a lone surrogate or a number orjson refuses
        assume(False)
    body = structured_body(decoded, record)
    assert outcome(KINDS[kind], body, limits) == outcome(KINDS[kind], decoded, limits)


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth - 1):
        value = [value]
    return value


ATTACHED = [
    {"Deep": nested(62)},
    {"Deep": nested(63)},
    {"Deep": nested(64)},
    {"Deep": nested(65)},
    {"Big": 2**64},
    {"Big": 2**64 - 1, "Small": -(2**63)},
    {"Text": "a\x00b"},
    {"Key\x00": 1},
    {"Escaped": "a\\u0000b"},
    {"Id": "12345678901234567890"},
    {"Fine": [{"a": 1}, {"b": "é😀"}]},
]
"""Attached data at each edge of what a record's or a line's bytes can prove clean."""


@pytest.mark.parametrize("attached", ATTACHED, ids=repr)
def test_a_structured_body_proven_clean_or_not_is_answered_as_before(
    attached: dict[str, Any],
) -> None:
    value = {"state_id": 24, "task_type": "customer info", **attached}
    record = structured(value)
    decoded = orjson.loads(record)["data"]
    body = structured_body(decoded, record)
    for kind in KINDS.values():
        assert outcome(kind, body, LIMITS[0]) == outcome(kind, decoded, LIMITS[0])


def test_only_a_clean_record_marks_its_data_and_raw_data_stays_bytes() -> None:
    clean = structured({"state_id": 24})
    assert isinstance(structured_body({"state_id": 24}, clean), Scanned)
    for unproven in (structured({"a": "\x00"}), structured({"a": 2**64}), structured(nested(70))):
        assert not isinstance(structured_body(orjson.loads(unproven)["data"], unproven), Scanned)
    assert structured_body(b'{"state_id":24}', clean) == b'{"state_id":24}'
    assert structured_body({"state_id": 24}, None) == {"state_id": 24}


def test_a_clean_structured_start_is_checked_by_the_native_path_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_full_check(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the full model check ran")

    record = structured(orjson.loads(common_body()))
    decoded = orjson.loads(record)["data"]
    monkeypatch.setattr(TaskStartEvent, "model_validate", no_full_check)
    valid = validate_event(EventKind.START, 21456878, structured_body(decoded, record))
    assert valid.start.state_id == 24


# --- plain `produce` lines: the body decoded with its line, proven clean by the line's bytes

PLAIN_IDS: dict[str, dict[str, Any]] = {
    "start": {},
    "end": {"task_id": 7},
    "extension": {"task_id": 7, "extension": "Survey"},
}
BODY_KEYS = {"start": "event", "end": "end", "extension": "value"}


def plain_line(kind: str, value: Any) -> bytes:
    line = {"service_id": 21456878, **PLAIN_IDS[kind], BODY_KEYS[kind]: value}
    return json.dumps(line, ensure_ascii=False).encode()


def answer(line: bytes, limits: Limits) -> Any:
    """Whether `produce` takes `line` (the kind of request it makes), or why it refuses it."""
    try:
        return LinePreparer(limits).prepare(line).kind
    except InvalidInputError as exc:
        return ("refused", str(exc))


def answer_before(kind: str, line: bytes, limits: Limits) -> Any:
    """The same, as it was before: a plain line's body decoded again from the compact JSON that
    is sent, a structured line decoded again as a record and its bytes scanned again."""
    obj = orjson.loads(line)
    try:
        tools_events._check_exact_integers(line)
        if "specversion" in obj:
            envelope = tools_events.decode_record(line, tools_events.STRUCTURED_HEADERS)
            tools_events.validated_envelope(envelope, limits, record=line)
        else:
            tools_events.validated(
                KINDS[kind],
                obj["service_id"],
                orjson.dumps(obj[BODY_KEYS[kind]]),
                limits,
                task_id=obj.get("task_id"),
                extension=obj.get("extension"),
            )
    except InvalidInputError as exc:
        return ("refused", str(exc))
    return KINDS[kind]


def structured_line(kind: str, value: Any) -> bytes:
    ids = {"taskid": 7} if kind != "start" else {}
    if kind == "extension":
        ids["extension"] = "Survey"
    return json.dumps(
        {
            "specversion": "1.0",
            "id": "e-1",
            "source": "urn:t",
            "type": TYPE_OF_KIND[KINDS[kind]],
            "serviceid": "21456878",
            **ids,
            "data": value,
        },
        ensure_ascii=False,
    ).encode()


LINES = {"plain": plain_line, "structured": structured_line}


@drawn(KINDS, examples=300)
def test_a_line_proven_clean_gets_the_answer_of_the_unproven_path(
    kind: str, data: st.DataObject, limits: Limits
) -> None:
    value = any_body(kind, data, limits)
    for shape in LINES.values():
        line = shape(kind, value)
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError:  # a number orjson refuses: refused before either path
            assume(False)
        assert answer(line, limits) == answer_before(kind, line, limits)


@pytest.mark.parametrize("attached", ATTACHED, ids=repr)
def test_a_line_proven_clean_or_not_is_answered_as_before(attached: dict[str, Any]) -> None:
    value = {"state_id": 24, "task_type": "customer info", **attached}
    for kind in KINDS:
        for shape in LINES.values():
            line = shape(kind, value)
            assert answer(line, LIMITS[0]) == answer_before(kind, line, LIMITS[0])


@pytest.mark.parametrize("shape", sorted(LINES))
@pytest.mark.parametrize("cap", [67, 68, 69, 200])
def test_a_line_whose_body_is_near_the_size_cap_is_answered_as_before(shape: str, cap: int) -> None:
    value = {"state_id": 24, "task_type": "customer info", "Survey": {"question1": 7}}
    assert len(orjson.dumps(value)) == 68
    for kind in KINDS:
        line = LINES[shape](kind, value)
        limits = Limits(max_body_bytes=cap)
        assert answer(line, limits) == answer_before(kind, line, limits)


@pytest.mark.parametrize("shape", sorted(LINES))
def test_a_clean_start_line_is_checked_by_the_native_path_alone_and_decoded_once(
    shape: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_full_check(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the full model check ran")

    decoded: list[bytes] = []
    real_loads = orjson.loads

    def loads(raw: bytes) -> Any:
        decoded.append(raw)
        return real_loads(raw)

    encoded: list[Any] = []
    real_dumps = orjson.dumps

    def dumps(value: Any, *args: Any, **kwargs: Any) -> bytes:
        encoded.append(value)
        return real_dumps(value, *args, **kwargs)

    line = LINES[shape]("start", orjson.loads(common_body()))
    monkeypatch.setattr(TaskStartEvent, "model_validate", no_full_check)
    monkeypatch.setattr(orjson, "loads", loads)  # the module every step decodes with
    monkeypatch.setattr(orjson, "dumps", dumps)
    record = LinePreparer(Limits()).prepare(line)
    assert decoded == [line]
    # A plain line's body is encoded to be sent, and its size cap checked on that JSON's
    # length (`Scanned.size`); a structured line is sent as it is, its data encoded only to
    # be measured.
    assert len(encoded) == 1
    assert record.kind is EventKind.START


def test_a_scanned_body_of_known_size_is_held_to_the_cap_by_that_size() -> None:
    value = {"state_id": 24}
    limits = Limits(max_body_bytes=100)
    assert validate_event(EventKind.START, 1, Scanned(value, 100), limits).start.state_id == 24
    with pytest.raises(EventValidationError, match="101 bytes as JSON"):
        validate_event(EventKind.START, 1, Scanned(value, 101), limits)
