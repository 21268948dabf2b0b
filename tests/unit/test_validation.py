"""The one validation entry (schemas/validation.py) and the ids it reads (schemas/ids.py)."""

from __future__ import annotations

import gc
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import validation
from schemas._events import parse_event
from schemas.errors import MAX_REPORTED_ERRORS, EventValidationError, merged, whole_body
from schemas.extension import ExtensionUpdate
from schemas.ids import TASK_ID_MAX, parse_task_id
from schemas.limits import FieldMode, Limits
from schemas.replies import ErrorCode
from schemas.task_end import TaskEndEvent
from schemas.task_start import TaskStartEvent, TaskStartValidationError
from schemas.validation import EventKind, ValidEvent, validate_event

STRICT = Limits(mode=FieldMode.STRICT)


def refused(kind: EventKind, service_id: Any, body: Any, **more: Any) -> EventValidationError:
    with pytest.raises(EventValidationError) as caught:
        validate_event(kind, service_id, body, **more)
    return caught.value


# --- what comes out


def test_a_valid_start_gives_the_service_id_as_an_int_and_the_start_event() -> None:
    valid = validate_event(EventKind.START, "21456878", b'{"state_id": "24", "x": 1}')
    assert valid.kind is EventKind.START
    assert (valid.service_id, valid.task_id, valid.extension) == (21456878, None, None)
    assert isinstance(valid.event, TaskStartEvent)
    assert valid.start.state_id == 24
    assert valid.start.attached_data == {"x": 1}


def test_a_valid_end_gives_the_task_id_and_the_end_event() -> None:
    valid = validate_event(EventKind.END, 5, {"disposition": 3}, task_id="42")
    assert (valid.service_id, valid.task_id) == (5, 42)
    assert isinstance(valid.end, TaskEndEvent)
    assert valid.end.disposition == 3


def test_a_valid_extension_update_gives_the_name_and_the_new_value() -> None:
    valid = validate_event(
        EventKind.EXTENSION, "5", b'[{"a": 1}]', task_id=42, extension="Proposal"
    )
    assert (valid.service_id, valid.task_id, valid.extension) == (5, 42, "Proposal")
    assert valid.update == ExtensionUpdate("Proposal", [{"a": 1}])


def test_the_result_is_frozen_and_its_typed_accessors_refuse_the_other_kinds() -> None:
    valid = validate_event("start", "5", b"{}")  # type: ignore[arg-type]  # a plain str works too
    assert isinstance(valid, ValidEvent)
    with pytest.raises(AttributeError):
        valid.service_id = 6  # type: ignore[misc]  # frozen on purpose
    with pytest.raises(TypeError, match="no Task End Event"):
        _ = valid.end
    with pytest.raises(TypeError, match="no extension update"):
        _ = valid.update


def test_the_mode_of_the_limits_applies() -> None:
    assert validate_event(EventKind.START, "5", b'{"interaction_id": 42}').start.interaction_id == (
        "42"
    )
    error = refused(EventKind.START, "5", b'{"interaction_id": 42}', limits=STRICT)
    assert [(e.field, e.problem) for e in error.errors] == [
        ("interaction_id", "must be a JSON string, got an integer")
    ]


def test_naming_a_task_or_an_extension_where_the_kind_has_none_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="no task id"):
        validate_event(EventKind.START, "5", b"{}", task_id=1)
    with pytest.raises(ValueError, match="no extension"):
        validate_event(EventKind.END, "5", b"{}", task_id=1, extension="x")


# --- every problem in one error


def test_a_bad_service_id_and_a_bad_body_are_reported_together_service_id_first() -> None:
    error = refused(EventKind.START, "abc", b'{"state_id": "x"}')
    assert isinstance(error, TaskStartValidationError)
    assert error.code is ErrorCode.INVALID_SERVICE_ID
    assert error.status == 400
    assert [e.field for e in error.errors] == ["service_id", "state_id"]
    assert error.message.startswith("Invalid service id: service_id must be")
    assert "Invalid task-start event: state_id must be" in error.message


def test_each_part_of_a_refused_request_is_checked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # A flood of bad requests must not cost twice what a good one does.
    calls: list[object] = []

    def counted(model: type[TaskStartEvent], body: object, limits: Limits) -> TaskStartEvent:
        calls.append(body)
        return parse_event(model, body, limits)

    monkeypatch.setattr(validation, "parse_event", counted)
    error = refused(EventKind.START, "abc", b'{"state_id": "x"}')
    assert [e.field for e in error.errors] == ["service_id", "state_id"]
    assert len(calls) == 1
    refused(EventKind.START, "5", b'{"state_id": "x"}')
    assert len(calls) == 2


def test_a_too_large_body_outranks_bad_ids_and_comes_first() -> None:
    error = refused(
        EventKind.END, None, b'{"note": "xxxxxxxxxxxxxxxxxxxxxx"}', task_id="0",
        limits=Limits(max_body_bytes=10),
    )  # fmt: skip
    assert error.code is ErrorCode.TOO_LARGE
    assert error.status == 413
    assert [e.field for e in error.errors] == ["", "service_id", "task_id"]
    assert error.message.startswith("The task-end event is too large: ")


def test_an_end_without_a_task_id_and_an_update_without_a_name_say_so() -> None:
    end = refused(EventKind.END, "5", b"{}")
    assert [(e.field, e.problem) for e in end.errors] == [
        ("task_id", "must be a decimal integer between 1 and 2147483647, got nothing")
    ]
    update = refused(EventKind.EXTENSION, "5", b"{}", task_id=1)
    assert [(e.field, e.problem) for e in update.errors] == [("extension_name", "must be given")]


def test_one_problem_alone_is_raised_as_it_is() -> None:
    error = refused(EventKind.START, "5", b"[]")
    assert error.code is ErrorCode.NOT_AN_OBJECT
    assert error.message == "The task-start event must be a JSON object, got an array."


def test_merged_errors_are_capped_at_the_reporting_limit() -> None:
    raw = orjson.dumps({f"k{i}": "\x00" for i in range(MAX_REPORTED_ERRORS + 5)})
    error = refused(EventKind.START, "bad", raw)
    assert len(error.errors) == MAX_REPORTED_ERRORS
    assert error.errors[0].field == "service_id"


def test_merging_keeps_request_order_within_a_status_and_needs_a_problem() -> None:
    first = whole_body(ErrorCode.MALFORMED_JSON, "first")
    second = whole_body(ErrorCode.INVALID_FIELD, "second")
    big = whole_body(ErrorCode.TOO_LARGE, "big")
    assert merged([first, second, big]).message == "big first second"
    assert merged([first]) is first
    with pytest.raises(ValueError, match="at least one"):
        merged([])


# --- task ids


@given(st.integers(1, TASK_ID_MAX))
def test_task_ids_from_1_to_the_32_bit_maximum_are_accepted_as_ints_and_strings(
    value: int,
) -> None:
    assert parse_task_id(value) == value
    assert parse_task_id(str(value)) == value


@pytest.mark.parametrize(
    ("raw", "got"),
    [
        (0, "0"),
        (TASK_ID_MAX + 1, "2147483648"),
        ("2147483648", "'2147483648'"),
        ("-1", "'-1'"),
        ("042", "'042' (write it without leading zeros)"),
        ("4 2", "'4 2'"),
        ("", "''"),
        (None, "nothing"),
        (True, "a boolean"),
        (1.0, "a floating-point number (1.0)"),
    ],
)
def test_task_ids_outside_the_range_or_not_plain_decimal_digits_are_refused(
    raw: Any, got: str
) -> None:
    with pytest.raises(EventValidationError) as caught:
        parse_task_id(raw)
    error = caught.value
    assert error.code is ErrorCode.INVALID_FIELD
    problem = f"must be a decimal integer between 1 and 2147483647, got {got}"
    assert [(e.field, e.problem) for e in error.errors] == [("task_id", problem)]
    assert error.message == f"Invalid task id: task_id {problem}."


@pytest.mark.parametrize(
    ("kind", "service_id", "body", "more"),
    [
        (EventKind.START, "5", b'{"state_id": "x"}', {}),
        (EventKind.START, "x", b"[]", {}),
        (EventKind.END, "5", b"{}", {"task_id": "0"}),
        (EventKind.EXTENSION, "5", b"[1]", {"task_id": 1, "extension": "started"}),
    ],
)
def test_a_refused_request_leaves_no_reference_cycle_that_would_keep_its_body_alive(
    kind: EventKind, service_id: str, body: bytes, more: dict[str, Any]
) -> None:
    validate_event(EventKind.START, "5", b"{}")  # warm: first-use caches are not garbage
    gc.collect()
    gc.disable()
    try:
        with pytest.raises(EventValidationError):
            validate_event(kind, service_id, body, **more)
        assert gc.collect() == 0
    finally:
        gc.enable()
