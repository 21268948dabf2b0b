"""The Update Task Extension request (schemas/extension.py): name rules and value rules."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas._json_walk import MAX_NESTING_DEPTH
from schemas.extension import (
    MAX_EXTENSION_NAME_LENGTH,
    ExtensionUpdate,
    parse_extension_name,
    parse_extension_update,
)
from schemas.fields import RESERVED_NAMES
from schemas.limits import DEFAULT_LIMITS, Limits
from schemas.replies import ErrorCode
from schemas.task_start import TaskStartValidationError


def rejection(
    name: str | None, data: bytes | Any, limits: Limits = DEFAULT_LIMITS
) -> TaskStartValidationError:
    with pytest.raises(TaskStartValidationError) as caught:
        parse_extension_update(name, data, limits)
    return caught.value


def problems(name: str | None, data: bytes | Any) -> dict[str, str]:
    return {e.field: e.problem for e in rejection(name, data).errors}


# --- the value


def test_an_object_replaces_a_single_valued_extension_verbatim_and_in_order() -> None:
    update = parse_extension_update("Survey", b'{"z": 1, "a": [true, null, 1.5], "m": {"k": "v"}}')
    assert update == ExtensionUpdate("Survey", {"z": 1, "a": [True, None, 1.5], "m": {"k": "v"}})
    assert isinstance(update.value, dict)
    assert list(update.value) == ["z", "a", "m"]


def test_an_array_of_objects_replaces_a_multi_valued_extension() -> None:
    raw = b'[{"car type": "cabriolet", "price": 25000}, {"car type": "S.U.V."}]'
    assert parse_extension_update("Proposal", raw).value == orjson.loads(raw)


@pytest.mark.parametrize("raw", [b"{}", b"[]"])
def test_an_empty_object_or_array_is_a_valid_value(raw: bytes) -> None:
    assert parse_extension_update("Survey", raw).value == orjson.loads(raw)


def test_a_decoded_value_is_accepted_as_well_as_bytes() -> None:
    assert parse_extension_update("Survey", [{"a": 1}]).value == [{"a": 1}]


@pytest.mark.parametrize(
    ("raw", "got"),
    [(b'"x"', "a string"), (b"7", "an integer"), (b"null", "null"), (b"true", "a boolean")],
)
def test_a_value_that_is_neither_an_object_nor_an_array_is_refused_naming_the_body(
    raw: bytes, got: str
) -> None:
    error = rejection("Survey", raw)
    assert error.code is ErrorCode.NOT_AN_OBJECT
    assert error.status == 400
    assert error.message == (
        f"The extension value must be a JSON object or an array of JSON objects, got {got}."
    )
    assert [e.field for e in error.errors] == [""]


def test_every_array_item_that_is_not_an_object_is_named_by_its_index() -> None:
    assert problems("Proposal", b'[{"a": 1}, 2, "x", {"b": 2}, []]') == {
        "[1]": "must be a JSON object, got an integer",
        "[2]": "must be a JSON object, got a string",
        "[4]": "must be a JSON object, got an array",
    }


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b'{"a": "x\\u0000"}', "a"),
        (b'[{"a": {"b\\u0000": 1}}]', "[0].a.b\\u0000"),
        ({"a": ["\x00"]}, "a[0]"),
    ],
)
def test_a_nul_character_anywhere_is_refused_naming_its_path(data: bytes | Any, field: str) -> None:
    assert field in problems("Survey", data)


def test_a_value_nested_deeper_than_the_limit_is_refused() -> None:
    def nested(levels: int) -> bytes:  # the value itself is level 1
        return b"{" + b'"a":' + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"

    assert parse_extension_update("Survey", nested(MAX_NESTING_DEPTH))
    assert list(problems("Survey", nested(MAX_NESTING_DEPTH + 1)).values()) == [
        f"is nested deeper than {MAX_NESTING_DEPTH} levels"
    ]


def test_an_integer_beyond_64_bits_is_refused_naming_its_path() -> None:
    assert problems("Survey", b'[{"n": 18446744073709551616}]') == {
        "[0].n": "is an integer beyond the 64-bit range, which cannot be kept exactly"
    }


def test_a_value_over_the_size_cap_is_a_413_as_bytes_and_as_decoded_json() -> None:
    raw = orjson.dumps({"a": "x" * 100})
    limits = Limits(max_body_bytes=len(raw) - 1)
    for data in (raw, orjson.loads(raw)):
        error = rejection("Survey", data, limits)
        assert error.code is ErrorCode.TOO_LARGE
        assert error.status == 413
        assert error.message.startswith("The extension value is too large: ")
    assert parse_extension_update("Survey", raw, Limits(max_body_bytes=len(raw)))


def test_a_malformed_value_is_malformed_json() -> None:
    error = rejection("Survey", b'{"a": 25 000}')
    assert error.code is ErrorCode.MALFORMED_JSON


STORABLE_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | STORABLE_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(STORABLE_TEXT, inner, max_size=3),
    max_leaves=10,
)


@given(
    st.dictionaries(STORABLE_TEXT, VALUES, max_size=4)
    | st.lists(st.dictionaries(STORABLE_TEXT, VALUES, max_size=3), max_size=3)
)
def test_any_storable_object_or_array_of_objects_comes_back_equal(value: Any) -> None:
    assert parse_extension_update("x", orjson.dumps(value)).value == value


# --- the name


@pytest.mark.parametrize(
    "name", ["Survey", "State_ID", "car type", "é" * MAX_EXTENSION_NAME_LENGTH, "a.b-c/d", "1"]
)
def test_names_of_printable_characters_up_to_256_long_are_accepted(name: str) -> None:
    assert parse_extension_name(name) == name


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "must not be empty"),
        ("x" * 257, "must be at most 256 characters long, got 257"),
        ("a\tb", "must not contain control characters, got U+0009"),
        ("a\x00", "must not contain control characters, got U+0000"),
        ("a\x7f", "must not contain control characters, got U+007F"),
        ("a\x85", "must not contain control characters, got U+0085"),
        ("a\ud800", "contains a lone UTF-16 surrogate, which is not valid Unicode text"),
        (None, "must be given"),
    ],
)
def test_empty_over_long_and_control_character_names_are_refused(
    name: str | None, problem: str
) -> None:
    with pytest.raises(TaskStartValidationError) as caught:
        parse_extension_name(name)
    error = caught.value
    assert error.code is ErrorCode.INVALID_FIELD
    assert [(e.field, e.problem) for e in error.errors] == [("extension_name", problem)]
    assert error.message.startswith("Invalid extension name: extension_name ")


@pytest.mark.parametrize("name", sorted(RESERVED_NAMES))
def test_standard_field_names_and_the_task_s_own_keys_are_reserved(name: str) -> None:
    with pytest.raises(TaskStartValidationError, match="is a reserved name"):
        parse_extension_name(name)


def test_reserved_names_are_case_sensitive() -> None:
    assert parse_extension_name("Task_ID") == "Task_ID"
    assert parse_extension_name("STARTED") == "STARTED"


def test_a_bad_name_and_a_bad_value_are_reported_together() -> None:
    error = rejection("started", b"[1]")
    assert [e.field for e in error.errors] == ["extension_name", "[0]"]
    assert "extension_name" in error.message
    assert "[0]" in error.message


def test_a_too_large_value_comes_first_even_with_a_bad_name() -> None:
    error = rejection("", b'{"a": "xxxxxxxxxxxxxxxx"}', Limits(max_body_bytes=5))
    assert error.code is ErrorCode.TOO_LARGE
    assert [e.field for e in error.errors] == ["", "extension_name"]
    assert error.message.startswith("The extension value is too large")
