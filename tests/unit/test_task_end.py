"""The Task End Event rules (schemas/task_end.py), against the task-lifecycle contract."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from schemas.fields import END_FIELDS, names
from schemas.limits import DEFAULT_LIMITS, FieldMode, Limits
from schemas.replies import ErrorCode
from schemas.task_end import END_EXAMPLE, RESERVED_END_KEYS, TaskEndEvent, parse_task_end
from schemas.task_start import TaskStartValidationError, format_timestamp

STRICT = Limits(mode=FieldMode.STRICT)


def rejection(data: bytes | Any, limits: Limits = DEFAULT_LIMITS) -> TaskStartValidationError:
    with pytest.raises(TaskStartValidationError) as caught:
        parse_task_end(data, limits)
    return caught.value


def problems(data: bytes | Any, limits: Limits = DEFAULT_LIMITS) -> dict[str, str]:
    error = rejection(data, limits)
    assert error.code is ErrorCode.INVALID_FIELD
    return {e.field: e.problem for e in error.errors}


def body(**fields: Any) -> bytes:
    return orjson.dumps(fields)


def test_the_example_end_event_validates_with_its_attached_data_kept() -> None:
    event = parse_task_end(orjson.dumps(END_EXAMPLE))
    assert isinstance(event, TaskEndEvent)
    assert (event.disposition, event.disposition_desc) == ("resolved", "customer satisfied")
    assert event.timestamp is not None
    assert format_timestamp(event.timestamp) == "2010-05-20T15:49:32.120Z"
    assert event.attached_data == {"Survey": {"question1": 9}}


def test_an_empty_end_event_is_valid_and_every_field_is_absent() -> None:
    event = parse_task_end(b"{}")
    assert all(getattr(event, name) is None for name in names(END_FIELDS))
    assert event.model_fields_set == set()


def test_state_id_and_task_type_are_accepted_because_real_clients_send_them_on_end() -> None:
    event = parse_task_end(body(state_id=24, task_type="customer info"))
    assert (event.state_id, event.task_type) == (24, "customer info")
    assert event.attached_data == {}


@pytest.mark.parametrize(("field", "cap"), [("session_id", 32), ("interaction_id", 50)])
def test_end_event_ids_have_their_own_length_caps(field: str, cap: int) -> None:
    assert getattr(parse_task_end(body(**{field: "x" * cap})), field) == "x" * cap
    assert problems(body(**{field: "x" * (cap + 1)})) == {
        field: f"must be at most {cap} characters long, got {cap + 1}"
    }


def test_disposition_desc_is_at_most_64_characters() -> None:
    assert parse_task_end(body(disposition_desc="d" * 64)).disposition_desc == "d" * 64
    assert problems(body(disposition_desc="d" * 65)) == {
        "disposition_desc": "must be at most 64 characters long, got 65"
    }


def test_a_smaller_configured_string_cap_still_wins_over_a_field_s_own_cap() -> None:
    assert problems(body(session_id="x" * 20), Limits(max_string_length=10)) == {
        "session_id": "must be at most 10 characters long, got 20"
    }


@pytest.mark.parametrize("limits", [DEFAULT_LIMITS, STRICT], ids=["genesys", "strict"])
@pytest.mark.parametrize("value", [1001, "resolved", "24"])
def test_disposition_is_long_or_string_as_sent_in_both_modes(value: object, limits: Limits) -> None:
    assert parse_task_end(body(disposition=value), limits).disposition == value


@pytest.mark.parametrize("value", ["", 2.0, True, [], {}])
def test_disposition_refuses_anything_but_an_integer_or_a_non_empty_string(value: object) -> None:
    assert problems(body(disposition=value))["disposition"].startswith(
        "must be a non-empty string or a JSON integer, got "
    )


def test_genesys_mode_takes_decimal_strings_for_integers_and_integers_for_strings() -> None:
    event = parse_task_end(body(application_id="7", resource_id="-3", session_id=42))
    assert (event.application_id, event.resource_id, event.session_id) == (7, -3, "42")


def test_strict_mode_refuses_decimal_strings_for_integers_and_integers_for_strings() -> None:
    assert problems(body(application_id="7", session_id=42), STRICT) == {
        "application_id": "must be a JSON integer, got a string",
        "session_id": "must be a JSON string, got an integer",
    }


@pytest.mark.parametrize("key", sorted(RESERVED_END_KEYS))
def test_reserved_keys_cannot_be_attached_data_of_an_end_event(key: str) -> None:
    assert problems(body(**{key: 1}))[key].startswith("is a reserved name")


def test_est_duration_belongs_to_the_start_and_is_refused_on_an_end_event() -> None:
    assert "est_duration" in problems(body(est_duration=5))


def test_explicit_nulls_nul_characters_and_bad_timestamps_are_all_reported_at_once() -> None:
    error = rejection(
        b'{"disposition": null, "note": "a\\u0000", "timestamp": "2010-05-20T15:41:52"}'
    )
    assert "Invalid task-end event" in error.message
    assert [e.field for e in error.errors] == ["disposition", "note", "timestamp"]
    assert error.errors[0].problem == "must not be null (omit the field instead)"


def test_a_body_that_is_not_an_object_or_too_large_is_named_as_a_task_end_event() -> None:
    assert rejection(b"[]").message == "The task-end event must be a JSON object, got an array."
    error = rejection(body(note="x" * 100), Limits(max_body_bytes=50))
    assert error.code is ErrorCode.TOO_LARGE
    assert error.status == 413
    assert error.message.startswith("The task-end event is too large: ")


def test_malformed_json_says_where_it_breaks() -> None:
    error = rejection(b'{"disposition": resolved}')
    assert error.code is ErrorCode.MALFORMED_JSON
    assert "at `resolved`" in error.message


def test_an_end_event_serialises_its_timestamp_in_the_contract_form() -> None:
    event = parse_task_end(body(timestamp="2010-05-20T17:41:52.380999+02:00", x=[1]))
    assert event.model_dump(mode="json", exclude_none=True) == {
        "timestamp": "2010-05-20T15:41:52.380Z",
        "x": [1],
    }
