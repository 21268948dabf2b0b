"""The Task Start Event rules (schemas/task_start.py), against the contract in the spec."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.replies import ErrorCode
from schemas.task_start import (
    DEFAULT_LIMITS,
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    MAX_NESTING_DEPTH,
    MAX_REPORTED_ERRORS,
    RESERVED_ATTACHED_KEYS,
    STANDARD_FIELDS,
    FieldMode,
    Limits,
    TaskStartEvent,
    TaskStartValidationError,
    format_timestamp,
    parse_service_id,
    parse_task_start,
)

# Byte for byte from the spec ("The reference example, verbatim").
REFERENCE_VERBATIM = (
    b'{ "interaction_id":42, "est_duration":460, "state_id":24, "task_type":customer info, '
    b'"Survey": { "url":"http://ourServer/storage/userAnswers", "question1":7, "question2":true, '
    b'"question3":"will be better with cable tv and on-demand video" }, "Proposal": [ { '
    b'"car type":"cabriolet", "price":25 000, "seats":2, "comments":"200 cv, hardtop" }, { '
    b'"car type":"S.U.V.", "price":70 000, "seats":8, "comments":"4wd, leather seats" } ] }'
)
REFERENCE_SYNTAX_FIXED = (
    REFERENCE_VERBATIM.replace(b"customer info", b'"customer info"')
    .replace(b"25 000", b"25000")
    .replace(b"70 000", b"70000")
)
REFERENCE_CORRECTED = REFERENCE_SYNTAX_FIXED.replace(
    b'"interaction_id":42', b'"interaction_id":"42"'
)

INT32_FIELDS = ("state_id", "application_id", "resource_id")
LONG_OR_STRING_FIELDS = ("task_type", "application_type", "resource_type", "media_type")
STRING_FIELDS = ("session_id", "interaction_id")
INTEGER_FIELDS = (*INT32_FIELDS, "est_duration", *LONG_OR_STRING_FIELDS)
STRICT = Limits(mode=FieldMode.STRICT)
GENESYS = Limits(mode=FieldMode.GENESYS)
MODES = pytest.mark.parametrize("limits", [GENESYS, STRICT], ids=["genesys", "strict"])


def rejection(data: bytes | Any, limits: Limits = DEFAULT_LIMITS) -> TaskStartValidationError:
    with pytest.raises(TaskStartValidationError) as caught:
        parse_task_start(data, limits)
    return caught.value


def problems(data: bytes | Any, limits: Limits = DEFAULT_LIMITS) -> dict[str, str]:
    error = rejection(data, limits)
    assert error.code is ErrorCode.INVALID_FIELD
    return {e.field: e.problem for e in error.errors}


def body(**fields: Any) -> bytes:
    return orjson.dumps(fields)


# --- the reference example


def test_the_verbatim_reference_example_is_malformed_json_pointing_at_customer() -> None:
    error = rejection(REFERENCE_VERBATIM)
    assert error.code is ErrorCode.MALFORMED_JSON
    assert error.status == 400
    column = REFERENCE_VERBATIM.index(b"customer") + 1
    assert f"line 1, column {column} (character {column - 1})" in error.message
    assert "at `customer`" in error.message
    assert '"task_type":customer info' in error.message
    assert [(e.field, e.problem) for e in error.errors] == [("", error.message)]


def test_the_reference_example_with_its_syntax_fixed_validates_in_genesys_mode_as_text_42() -> None:
    assert DEFAULT_LIMITS.mode is FieldMode.GENESYS
    event = parse_task_start(REFERENCE_SYNTAX_FIXED)
    assert event.interaction_id == "42"
    assert event.model_dump(mode="json")["interaction_id"] == "42"
    assert event.attached_data == parse_task_start(REFERENCE_CORRECTED).attached_data


def test_the_syntax_fixed_reference_example_is_rejected_in_strict_mode_naming_interaction_id() -> (
    None
):
    error = rejection(REFERENCE_SYNTAX_FIXED, STRICT)
    assert error.code is ErrorCode.INVALID_FIELD
    assert [e.field for e in error.errors] == ["interaction_id"]
    assert error.errors[0].problem == "must be a JSON string, got an integer"
    assert "interaction_id" in error.message


def test_the_corrected_reference_example_validates_and_keeps_survey_and_proposal_verbatim() -> None:
    event = parse_task_start(REFERENCE_CORRECTED)
    sent = orjson.loads(REFERENCE_CORRECTED)
    assert (event.interaction_id, event.est_duration, event.state_id) == ("42", 460, 24)
    assert event.task_type == "customer info"
    assert event.timestamp is None
    assert event.attached_data == {"Survey": sent["Survey"], "Proposal": sent["Proposal"]}
    assert orjson.dumps(event.attached_data) == orjson.dumps(
        {"Survey": sent["Survey"], "Proposal": sent["Proposal"]}
    )
    assert list(event.attached_data["Proposal"][0]) == ["car type", "price", "seats", "comments"]


# --- integers


@given(field=st.sampled_from(INT32_FIELDS), value=st.integers(-(2**31), 2**31 - 1))
def test_32_bit_fields_accept_every_32_bit_integer(field: str, value: int) -> None:
    assert getattr(parse_task_start(body(**{field: value})), field) == value


@given(
    field=st.sampled_from(INT32_FIELDS),
    value=st.one_of(st.integers(max_value=-(2**31) - 1), st.integers(min_value=2**31)).filter(
        lambda n: -(2**63) <= n < 2**64
    ),
)
def test_32_bit_fields_reject_integers_just_outside_32_bits(field: str, value: int) -> None:
    assert problems(body(**{field: value})) == {
        field: f"must be between -2147483648 and 2147483647, got {value}"
    }


@pytest.mark.parametrize("field", INT32_FIELDS)
@pytest.mark.parametrize("value", [-(2**31) - 1, 2**31])
def test_32_bit_fields_reject_the_first_integer_past_each_bound(field: str, value: int) -> None:
    assert field in problems(body(**{field: value}))


@given(value=st.integers(0, INT32_MAX))
def test_est_duration_accepts_zero_up_to_the_32_bit_maximum(value: int) -> None:
    assert parse_task_start(body(est_duration=value)).est_duration == value


@pytest.mark.parametrize("value", [-1, 2**31, -(2**31)])
def test_est_duration_rejects_negative_values_and_values_past_32_bits(value: int) -> None:
    assert problems(body(est_duration=value)) == {
        "est_duration": f"must be between 0 and 2147483647, got {value}"
    }


@given(field=st.sampled_from(LONG_OR_STRING_FIELDS), value=st.integers(-(2**63), INT64_MAX))
def test_long_or_string_fields_accept_every_64_bit_integer(field: str, value: int) -> None:
    assert getattr(parse_task_start(body(**{field: value})), field) == value


@pytest.mark.parametrize("field", LONG_OR_STRING_FIELDS)
@pytest.mark.parametrize("value", [2**63, 2**64 - 1])
def test_long_or_string_fields_reject_integers_just_past_64_bits(field: str, value: int) -> None:
    assert problems(body(**{field: value}))[field].startswith("must be between")


@pytest.mark.parametrize("field", LONG_OR_STRING_FIELDS)
def test_long_or_string_fields_reject_integers_below_the_64_bit_minimum(field: str) -> None:
    raw = f'{{"{field}": -9223372036854775809}}'.encode()
    assert field in problems(raw)


@MODES
@pytest.mark.parametrize("field", INTEGER_FIELDS)
@pytest.mark.parametrize(
    ("raw", "got"),
    [
        (b"42.0", "a floating-point number (42.0)"),
        (b"2.0", "a floating-point number (2.0)"),
        (b"true", "a boolean"),
        (b"[1]", "an array"),
        (b'{"a":1}', "an object"),
    ],
)
def test_integer_fields_reject_floats_booleans_arrays_and_objects_in_both_modes(
    field: str, raw: bytes, got: str, limits: Limits
) -> None:
    problem = problems(b'{"%s": %s}' % (field.encode(), raw), limits)[field]
    assert problem.endswith(f"got {got}")


@pytest.mark.parametrize("field", [*INT32_FIELDS, "est_duration"])
def test_integer_fields_reject_numbers_written_as_strings_in_strict_mode(field: str) -> None:
    assert problems(body(**{field: "42"}), STRICT) == {
        field: "must be a JSON integer, got a string"
    }


@pytest.mark.parametrize("field", [*INT32_FIELDS, "est_duration"])
def test_integer_fields_take_a_string_of_decimal_digits_as_its_integer_in_genesys_mode(
    field: str,
) -> None:
    event = parse_task_start(body(**{field: "24"}))
    assert getattr(event, field) == 24
    assert type(getattr(event, field)) is int
    assert orjson.loads(orjson.dumps(event.model_dump(mode="json")))[field] == 24


def test_limits_take_the_mode_by_name_as_a_setting_gives_it() -> None:
    limits = Limits(mode="strict")  # type: ignore[arg-type]  # what an env variable holds
    assert limits.mode is FieldMode.STRICT
    assert "state_id" in problems(body(state_id="24"), limits)
    with pytest.raises(ValueError, match="'lenient' is not a valid FieldMode"):
        Limits(mode="lenient")  # type: ignore[arg-type]  # refused on purpose


def test_state_id_24_written_as_a_string_reads_back_as_the_integer_24() -> None:
    assert parse_task_start(b'{"state_id": "24"}').model_dump(exclude_none=True) == {"state_id": 24}


@given(field=st.sampled_from(INT32_FIELDS), value=st.integers(INT32_MIN, INT32_MAX))
def test_int32_fields_take_every_32_bit_integer_written_in_decimal_in_genesys_mode(
    field: str, value: int
) -> None:
    assert getattr(parse_task_start(body(**{field: str(value)})), field) == value


@pytest.mark.parametrize(
    ("text", "expected"), [("-0", 0), ("007", 7), ("-2147483648", INT32_MIN), ("0" * 40 + "5", 5)]
)
def test_a_decimal_string_may_carry_a_minus_sign_and_leading_zeros_in_genesys_mode(
    text: str, expected: int
) -> None:
    assert parse_task_start(body(state_id=text)).state_id == expected


@pytest.mark.parametrize(
    ("field", "text", "shown"),
    [
        ("state_id", "2147483648", "2147483648"),
        ("state_id", "-2147483649", "-2147483649"),
        ("est_duration", "-1", "-1"),
        ("resource_id", "9" * 25, "'" + "9" * 25 + "'"),
        ("application_id", "9" * 5000, "'" + "9" * 37 + "...'"),
    ],
)
def test_decimal_strings_out_of_range_are_rejected_with_the_range_in_genesys_mode(
    field: str, text: str, shown: str
) -> None:
    problem = problems(body(**{field: text}))[field]
    assert problem.startswith("must be between ")
    assert problem.endswith(f", got {shown}")


@pytest.mark.parametrize(
    ("text", "got"),
    [
        ("", "an empty string"),
        (" 24", "' 24'"),
        ("24 ", "'24 '"),
        ("+24", "'+24'"),
        ("-", "'-'"),
        ("24.0", "'24.0'"),
        ("1e3", "'1e3'"),
        ("0x10", "'0x10'"),
        ("1_000", "'1_000'"),
        ("\u0662\u0664", "'\u0662\u0664'"),
        ("twenty-four", "'twenty-four'"),
    ],
)
def test_strings_that_are_not_plain_decimal_integers_are_rejected_in_genesys_mode(
    text: str, got: str
) -> None:
    raw = b'{"state_id": "%s"}' % text.encode()
    assert problems(raw) == {
        "state_id": f"must be a JSON integer or a string of decimal digits, got {got}"
    }


@MODES
@pytest.mark.parametrize("field", LONG_OR_STRING_FIELDS)
def test_long_or_string_fields_keep_a_non_empty_string_as_sent_in_both_modes(
    field: str, limits: Limits
) -> None:
    assert getattr(parse_task_start(body(**{field: "42"}), limits), field) == "42"


@MODES
@pytest.mark.parametrize("field", LONG_OR_STRING_FIELDS)
def test_long_or_string_fields_reject_an_empty_string_in_both_modes(
    field: str, limits: Limits
) -> None:
    assert problems(body(**{field: ""}), limits) == {
        field: "must be a non-empty string or a JSON integer, got an empty string"
    }


# --- strings


@pytest.mark.parametrize("field", STRING_FIELDS)
@pytest.mark.parametrize(
    ("value", "got"), [(42, "an integer"), (True, "a boolean"), ([], "an array")]
)
def test_string_fields_take_json_strings_only_in_strict_mode(
    field: str, value: object, got: str
) -> None:
    assert problems(body(**{field: value}), STRICT) == {field: f"must be a JSON string, got {got}"}


@given(field=st.sampled_from(STRING_FIELDS), value=st.integers(-(2**63), 2**64 - 1))
def test_string_fields_take_a_json_integer_as_its_decimal_text_in_genesys_mode(
    field: str, value: int
) -> None:
    event = parse_task_start(body(**{field: value}))
    assert getattr(event, field) == str(value)
    assert event.model_dump(mode="json")[field] == str(value)


@pytest.mark.parametrize("field", STRING_FIELDS)
@pytest.mark.parametrize(
    ("raw", "got"),
    [
        (b"42.0", "a floating-point number (42.0)"),
        (b"true", "a boolean"),
        (b"[]", "an array"),
        (b"{}", "an object"),
    ],
)
def test_string_fields_reject_floats_booleans_arrays_and_objects_in_genesys_mode(
    field: str, raw: bytes, got: str
) -> None:
    assert problems(b'{"%s": %s}' % (field.encode(), raw)) == {
        field: f"must be a JSON string or a JSON integer, got {got}"
    }


def test_an_integer_taken_as_text_still_obeys_the_string_length_cap() -> None:
    limits = Limits(max_string_length=3)
    assert parse_task_start(body(session_id=123), limits).session_id == "123"
    assert problems(body(session_id=1234), limits) == {
        "session_id": "must be at most 3 characters long, got 4"
    }


def test_a_decoded_integer_beyond_64_bits_is_not_taken_as_text() -> None:
    assert problems({"session_id": 2**64}) == {
        "session_id": "is an integer beyond the 64-bit range, which cannot be kept exactly"
    }


@pytest.mark.parametrize("field", [*STRING_FIELDS, *LONG_OR_STRING_FIELDS])
def test_strings_up_to_the_configured_length_are_accepted_and_longer_ones_rejected(
    field: str,
) -> None:
    limits = Limits(max_string_length=8)
    assert getattr(parse_task_start(body(**{field: "é" * 8}), limits), field) == "é" * 8
    assert problems(body(**{field: "x" * 9}), limits) == {
        field: "must be at most 8 characters long, got 9"
    }


def test_the_default_string_cap_is_1024_characters() -> None:
    assert parse_task_start(body(session_id="s" * 1024)).session_id == "s" * 1024
    assert "session_id" in problems(body(session_id="s" * 1025))


# --- null, all problems, reserved keys


@pytest.mark.parametrize("field", sorted(STANDARD_FIELDS))
def test_an_explicit_null_for_a_standard_field_is_rejected(field: str) -> None:
    assert problems(body(**{field: None})) == {field: "must not be null (omit the field instead)"}


def test_absent_standard_fields_are_none() -> None:
    event = parse_task_start(b"{}")
    assert all(getattr(event, name) is None for name in STANDARD_FIELDS)
    assert event.attached_data == {}


def test_every_problem_is_reported_at_once_in_the_order_of_the_body() -> None:
    error = rejection(
        b'{"est_duration": -1, "Survey": {"a": "\\u0000"}, "state_id": "one", '
        b'"task_id": 7, "timestamp": "yesterday", "media_type": false}'
    )
    assert [e.field for e in error.errors] == [
        "est_duration",
        "Survey.a",
        "state_id",
        "task_id",
        "timestamp",
        "media_type",
    ]
    for field in ("est_duration", "Survey.a", "state_id", "task_id", "timestamp"):
        assert field in error.message


@pytest.mark.parametrize("key", sorted(RESERVED_ATTACHED_KEYS))
def test_reserved_keys_cannot_be_attached_data(key: str) -> None:
    assert problems(body(**{key: 1}))[key].startswith("is a reserved name")


def test_model_validate_alone_also_refuses_reserved_keys_and_nul() -> None:
    with pytest.raises(ValidationError) as caught:
        TaskStartEvent.model_validate({"extensions": [], "x": "\x00", "state_id": "one"})
    assert [e["loc"] for e in caught.value.errors()] == [("state_id",), ("extensions",), ("x",)]


# --- what PostgreSQL can store


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"session_id": "a\\u0000b"}', "session_id"),
        (b'{"task_type": "\\u0000"}', "task_type"),
        (b'{"note": "\\u0000"}', "note"),
        (b'{"Survey": {"answers": [1, {"deep": "x\\u0000"}]}}', "Survey.answers[1].deep"),
    ],
)
def test_a_nul_character_in_any_string_is_rejected_naming_its_path(raw: bytes, field: str) -> None:
    assert (
        problems(raw)[field] == "contains a NUL character (U+0000), which PostgreSQL cannot store"
    )


def test_a_nul_character_in_an_attached_key_is_rejected_and_escaped_in_the_path() -> None:
    error = rejection(b'{"Survey": {"bad\\u0000key": 1}}')
    assert [e.field for e in error.errors] == ["Survey.bad\\u0000key"]
    assert "\x00" not in orjson.dumps(error.body().model_dump()).decode()


def test_an_escaped_backslash_before_u0000_is_not_a_nul() -> None:
    assert parse_task_start(b'{"a": "\\\\u0000"}').attached_data == {"a": "\\u0000"}


def test_attached_data_nested_up_to_the_limit_is_accepted_and_deeper_is_rejected() -> None:
    def nested(levels: int) -> bytes:  # the body object is level 1
        return b'{"a":' + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"

    assert parse_task_start(nested(MAX_NESTING_DEPTH)).attached_data["a"]
    error = rejection(nested(MAX_NESTING_DEPTH + 1))
    assert error.errors[0].problem == f"is nested deeper than {MAX_NESTING_DEPTH} levels"


def test_integers_beyond_64_bits_that_orjson_reads_as_floats_are_rejected_naming_the_path() -> None:
    error = rejection(
        b'{"Survey": {"n": [1, 18446744073709551616]}, "state_id": 99999999999999999999}'
    )
    assert {e.field: e.problem for e in error.errors} == {
        "Survey.n[1]": "is an integer beyond the 64-bit range, which cannot be kept exactly",
        "state_id": "is an integer beyond the 64-bit range, which cannot be kept exactly",
    }


def test_unsigned_64_bit_integers_and_big_floats_in_attached_data_are_kept_exactly() -> None:
    attached = parse_task_start(
        b'{"u": 18446744073709551615, "f": 1e20, "s": "12345678901234567890"}'
    )
    assert attached.attached_data == {"u": 2**64 - 1, "f": 1e20, "s": "12345678901234567890"}
    assert type(attached.attached_data["f"]) is float


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (math.nan, "must be a finite number, got nan"),
        (math.inf, "must be a finite number, got inf"),
        ({1: "x"}, "has a key that is not a string"),
        ({"x"}, "is a set, which is not a JSON value"),
        ("\ud800", "contains a lone UTF-16 surrogate, which is not valid Unicode text"),
        (2**64, "is an integer beyond the 64-bit range, which cannot be kept exactly"),
    ],
)
def test_decoded_data_that_json_or_postgresql_cannot_hold_is_rejected(
    value: object, problem: str
) -> None:
    assert problem in problems({"x": value}).values()


# --- timestamps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2010-05-20T15:41:52.380Z", "2010-05-20T15:41:52.380Z"),
        ("2024-02-29T00:00:00.001Z", "2024-02-29T00:00:00.001Z"),
        ("0001-01-01T00:00:00.000Z", "0001-01-01T00:00:00.000Z"),
        ("9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z"),
        ("2010-05-20T15:41:52Z", "2010-05-20T15:41:52.000Z"),
        ("2010-05-20t15:41:52.3809999z", "2010-05-20T15:41:52.380Z"),
        ("2010-05-20 17:41:52.38+02:00", "2010-05-20T15:41:52.380Z"),
        ("2010-05-20T10:41:52.380-05:00", "2010-05-20T15:41:52.380Z"),
        ("2010-05-20T15:41:52.380-00:00", "2010-05-20T15:41:52.380Z"),
    ],
)
def test_timestamps_with_an_offset_are_normalised_to_utc_milliseconds(
    text: str, expected: str
) -> None:
    stamp = parse_task_start(body(timestamp=text)).timestamp
    assert stamp is not None
    assert stamp.utcoffset() == timedelta(0)
    assert stamp.microsecond % 1000 == 0
    assert format_timestamp(stamp) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("2010-05-20T15:41:52.380", "without a UTC offset"),
        ("2010-05-20", "a date without a time"),
        ("customer info", "is not one"),
        ("2010-05-20T15:41:52.380+0200", "is not one"),
        ("2010-02-30T15:41:52Z", "not a valid date-time"),
        ("2010-02-30T15:41:52.000Z", "not a valid date-time"),  # the contract's form, no date
        ("2016-12-31T23:59:60.000Z", "not a valid date-time"),  # a leap second
        ("2010-05-20T24:00:00.000Z", "not a valid date-time"),
        ("2010-05-20T24:00:00Z", "not a valid date-time"),
        ("9999-12-31T23:59:59-01:00", "not a valid date-time"),
        (1274370112380, "must be a date-time string, got an integer"),
    ],
)
def test_naive_date_only_unparsable_and_non_string_timestamps_are_rejected(
    value: object, fragment: str
) -> None:
    assert fragment in problems(body(timestamp=value))["timestamp"]


def test_a_timestamp_serialises_in_the_contract_form() -> None:
    event = parse_task_start(body(timestamp="2010-05-20T17:41:52.380123+02:00"))
    assert event.model_dump(mode="json")["timestamp"] == "2010-05-20T15:41:52.380Z"


def test_format_timestamp_renders_utc_with_three_fraction_digits() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert format_timestamp(datetime(2010, 5, 20, 17, 41, 52, 380999, plus_two)) == (
        "2010-05-20T15:41:52.380Z"
    )
    assert format_timestamp(datetime(10, 1, 2, tzinfo=UTC)) == "0010-01-02T00:00:00.000Z"


def test_format_timestamp_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_timestamp(datetime(2010, 5, 20))  # noqa: DTZ001 - the naive value under test


# --- decoding and size


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "the body is empty"),
        (b" \n ", "the body is empty"),
        (b'\xef\xbb\xbf{"a":1}', "byte order mark"),
        (b'{"a":"\xff"}', "not valid UTF-8: byte 0xff at byte offset 6"),
        (b'{"a":NaN}', "at `NaN` (NaN and Infinity are not JSON numbers)"),
        (b'{"a":Infinity}', "at `Infinity` (NaN and Infinity are not JSON numbers)"),
        (b'{"a":-Infinity}', "NaN and Infinity are not JSON numbers"),
        (b'{"a":1e400}', "number is infinity"),
        (b'{"a":1} x', "at `x`"),
        (b'{"a":1', "at the end of the body"),
    ],
)
def test_bodies_that_are_not_json_get_malformed_json_saying_why(raw: bytes, fragment: str) -> None:
    error = rejection(raw)
    assert error.code is ErrorCode.MALFORMED_JSON
    assert fragment in error.message


def test_a_malformed_body_is_located_by_line_column_and_character() -> None:
    error = rejection(b'{\n  "a": 1,\n  "b": oops\n}')
    assert "line 3, column 8 (character 19)" in error.message
    assert "at `oops`" in error.message


def test_control_characters_in_a_malformed_snippet_are_escaped() -> None:
    error = rejection(b'{"a": \x00}')
    assert "\x00" not in error.message
    assert "\\u0000" in error.message


@pytest.mark.parametrize(
    ("data", "got"),
    [
        (b"[1]", "an array"),
        (b'"x"', "a string"),
        (b"7", "an integer"),
        (b"null", "null"),
        (None, "null"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_rejected_as_not_an_object(
    data: object, got: str
) -> None:
    error = rejection(data)
    assert error.code is ErrorCode.NOT_AN_OBJECT
    assert error.message == f"The task-start event must be a JSON object, got {got}."
    assert [e.field for e in error.errors] == [""]


def test_a_body_over_the_byte_limit_is_too_large_and_one_at_the_limit_is_accepted() -> None:
    raw = body(note="x" * 100)
    assert parse_task_start(raw, Limits(max_body_bytes=len(raw)))
    error = rejection(raw, Limits(max_body_bytes=len(raw) - 1))
    assert error.code is ErrorCode.TOO_LARGE
    assert error.status == 413
    assert f"the limit is {len(raw) - 1} bytes" in error.message
    assert [e.field for e in error.errors] == [""]


def test_decoded_data_over_the_byte_limit_is_too_large() -> None:
    error = rejection({"note": "x" * 100}, Limits(max_body_bytes=50))
    assert error.code is ErrorCode.TOO_LARGE


def test_duplicate_keys_keep_the_last_value() -> None:
    assert parse_task_start(b'{"state_id": 1, "state_id": 2}').state_id == 2


def test_error_texts_never_leak_pydantic_wording_or_urls() -> None:
    error = rejection(b'{"state_id": "x", "task_type": [], "timestamp": 1, "session_id": {}}')
    text = orjson.dumps(error.body().model_dump()).decode()
    assert "pydantic" not in text
    assert "Input should" not in text


def test_problems_beyond_the_reporting_cap_are_counted_in_the_message() -> None:
    raw = orjson.dumps({f"k{i}": "\x00" for i in range(MAX_REPORTED_ERRORS + 5)})
    error = rejection(raw)
    assert len(error.errors) == MAX_REPORTED_ERRORS
    assert f"{MAX_REPORTED_ERRORS + 5} problems" in error.message


def test_the_error_body_carries_message_errors_and_the_reference_exception_class() -> None:
    error = rejection(body(state_id="one"))
    error_body = error.body()
    assert error_body.message == error.message == str(error)
    assert error_body.errors == error.errors
    assert error_body.exception.endswith("ContextServicesExceptionResource")


# --- attached data round trip

# Any Unicode text PostgreSQL can store: no U+0000, no lone surrogates (not UTF-8 encodable).
STORABLE_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"))
JSON_KEYS = STORABLE_TEXT.filter(
    lambda k: k not in STANDARD_FIELDS and k not in RESERVED_ATTACHED_KEYS
)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | STORABLE_TEXT
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(JSON_KEYS, inner, max_size=4),
    max_leaves=12,
)


def same_json(a: object, b: object) -> bool:
    """Equal values of the same JSON types (1, 1.0 and true differ), objects in the same order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(same_json, a, b))
    return a == b


@given(st.dictionaries(JSON_KEYS, JSON_VALUES, max_size=6))
def test_attached_data_comes_back_equal_in_order_and_with_the_same_json_types(
    attached: dict[str, Any],
) -> None:
    from_bytes = parse_task_start(orjson.dumps(attached)).attached_data
    from_decoded = parse_task_start(attached).attached_data
    assert same_json(from_bytes, attached)
    assert same_json(from_decoded, attached)


def test_one_one_point_zero_and_true_stay_distinct() -> None:
    attached = parse_task_start(b'{"i": 1, "f": 1.0, "b": true, "n": null}').attached_data
    assert [type(v) for v in attached.values()] == [int, float, bool, type(None)]


# --- service id


@given(st.integers(1, INT64_MAX))
def test_service_ids_from_1_to_the_64_bit_maximum_are_accepted_as_ints_and_strings(
    value: int,
) -> None:
    assert parse_service_id(value) == value
    assert parse_service_id(str(value)) == value


@given(st.one_of(st.integers(max_value=0), st.integers(min_value=INT64_MAX + 1)))
def test_service_ids_outside_1_to_the_64_bit_maximum_are_rejected(value: int) -> None:
    for raw in (value, str(value)):
        with pytest.raises(TaskStartValidationError) as caught:
            parse_service_id(raw)
        assert caught.value.code is ErrorCode.INVALID_SERVICE_ID
        assert [e.field for e in caught.value.errors] == ["service_id"]


@pytest.mark.parametrize(
    "raw",
    [
        "",
        " 1",
        "1 ",
        "+1",
        "-1",
        "1.0",
        "1_000",
        "0x10",
        "007",
        "\u0661\u0662",
        "9" * 40,
        None,
        True,
        1.0,
    ],
)
def test_service_ids_that_are_not_plain_decimal_digits_are_rejected(raw: Any) -> None:
    with pytest.raises(TaskStartValidationError) as caught:
        parse_service_id(raw)
    assert caught.value.code is ErrorCode.INVALID_SERVICE_ID
    assert caught.value.status == 400
    assert "service_id" in caught.value.message


def test_a_service_id_with_leading_zeros_is_told_to_drop_them() -> None:
    with pytest.raises(TaskStartValidationError, match="without leading zeros"):
        parse_service_id("021456878")


WILD_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.sampled_from(["\x00", "\ud800", "", "task_id"])
)
WILD_VALUES = st.recursive(
    WILD_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


def holds_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_nul(k) or holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(map(holds_nul, value))
    return False


def outcome(data: bytes | Any) -> TaskStartEvent | TaskStartValidationError:
    try:
        return parse_task_start(data)
    except TaskStartValidationError as error:
        return error


def assert_storable_or_explained(result: TaskStartEvent | TaskStartValidationError) -> None:
    if isinstance(result, TaskStartValidationError):
        document = result.body().model_dump()
    else:  # what the consumer stores: the standard fields and the attached data
        document = result.model_dump(mode="json")
    assert not holds_nul(orjson.loads(orjson.dumps(document)))


def json_text(value: object) -> bytes:
    """Python's JSON writer: it also writes NaN, Infinity, huge integers and lone surrogates."""
    return json.dumps(value).encode()


@given(st.binary(max_size=200) | st.builds(json_text, st.dictionaries(st.text(), WILD_VALUES)))
def test_any_bytes_either_validate_into_something_storable_or_get_an_error_body(
    raw: bytes,
) -> None:
    assert_storable_or_explained(outcome(raw))


@given(st.dictionaries(st.text() | st.sampled_from(sorted(STANDARD_FIELDS)), WILD_VALUES))
def test_any_decoded_value_either_validates_into_something_storable_or_gets_an_error_body(
    data: dict[str, Any],
) -> None:
    assert_storable_or_explained(outcome(data))


def test_a_non_string_top_level_key_in_decoded_data_is_reported_once() -> None:
    assert problems({1: "x", "state_id": 1}) == {"1": "is a key that is not a string"}
