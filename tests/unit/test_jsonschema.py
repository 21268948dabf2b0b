"""The generated JSON Schema files (schemas/jsonschema/) match the models."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from schemas import export
from schemas._task_fields import INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, format_timestamp
from schemas.fields import Kind, StandardField
from schemas.limits import FieldMode, Limits
from schemas.replies import EventRef, StoredTask, TaskCompleted, TaskExtensionUpdated
from schemas.task_end import RESERVED_END_KEYS, TaskEndEvent, parse_task_end
from schemas.task_start import (
    RESERVED_ATTACHED_KEYS,
    STANDARD_FIELDS,
    TaskStartEvent,
    TaskStartValidationError,
    parse_task_start,
)


def test_the_committed_json_schema_files_are_up_to_date() -> None:
    assert export.main(check=True) == 0, "run `ucs-tasks schemas export` and commit the result"


def test_check_mode_reports_missing_and_stale_files_and_writes_nothing(tmp_path: Path) -> None:
    assert export.main(check=True, directory=tmp_path) == 1
    assert list(tmp_path.iterdir()) == []
    assert export.main(directory=tmp_path) == 0
    assert export.main(check=True, directory=tmp_path) == 0
    (tmp_path / "ErrorBody.json").write_text("{}\n", encoding="utf-8")
    assert export.main(check=True, directory=tmp_path) == 1


def test_every_file_is_pretty_json_with_sorted_keys_and_a_trailing_newline() -> None:
    for path, text in export.expected_files().items():
        assert text.endswith("}\n")
        assert orjson.loads(text) == orjson.loads(path.read_bytes())
        assert text.startswith('{\n  "')


def test_the_task_start_schema_documents_every_field_and_the_reserved_keys() -> None:
    schema = TaskStartEvent.model_json_schema()
    properties = schema["properties"]
    assert set(properties) == set(TaskStartEvent.model_fields)
    assert all(prop.get("description") for prop in properties.values())
    assert all("default" not in prop for prop in properties.values())
    assert "null" not in orjson.dumps(properties).decode()
    assert schema["additionalProperties"] is True
    assert set(schema["propertyNames"]["not"]["enum"]) == RESERVED_ATTACHED_KEYS
    genesys_state, genesys_duration = (properties[n]["anyOf"] for n in ("state_id", "est_duration"))
    assert genesys_state[0]["maximum"] == 2**31 - 1
    assert genesys_state[1] == {"type": "string", "pattern": "^-?[0-9]+$"}
    assert genesys_duration[0]["minimum"] == 0
    strict = export.json_schema(TaskStartEvent, FieldMode.STRICT)["properties"]
    assert strict["state_id"]["maximum"] == 2**31 - 1
    assert strict["est_duration"]["minimum"] == 0
    assert strict["interaction_id"]["type"] == "string"
    assert all(strict[name]["description"] == properties[name]["description"] for name in strict)


def test_every_published_file_is_a_valid_json_schema_document() -> None:
    files = export.expected_files()
    assert {path.name for path in files} >= {
        "TaskStartEvent.json",
        "TaskStartEvent.strict.json",
        "TaskEndEvent.json",
        "TaskEndEvent.strict.json",
        "TaskStartCloudEvent.strict.json",
        "TaskExtensionValue.json",
        "TaskCompleted.json",
        "TaskExtensionUpdated.json",
    }
    for path, text in files.items():
        assert jsonschema_rs.meta.is_valid(orjson.loads(text)), path.name


def test_only_schemas_holding_a_task_event_have_a_strict_variant() -> None:
    strict = {m.__name__ for m in export.MODELS if export.has_strict_variant(m)}
    assert strict == {"TaskStartEvent", "TaskEndEvent", "TaskStartCloudEvent"}


def test_the_end_event_schema_documents_its_caps_and_reserved_keys() -> None:
    schema = TaskEndEvent.model_json_schema()
    assert set(schema["propertyNames"]["not"]["enum"]) == RESERVED_END_KEYS
    strict = export.json_schema(TaskEndEvent, FieldMode.STRICT)["properties"]
    assert strict["session_id"]["maxLength"] == 32
    assert strict["interaction_id"]["maxLength"] == 50
    assert strict["disposition_desc"]["maxLength"] == 64


# --- the schemas agree with validation, in each mode


def validator(model: type[BaseModel], mode: FieldMode) -> Any:
    return jsonschema_rs.Draft202012Validator(
        export.json_schema(model, mode), validate_formats=True
    )


VALIDATORS: dict[tuple[type[BaseModel], FieldMode], Any] = {
    (model, mode): validator(model, mode)
    for model in (TaskStartEvent, TaskEndEvent)
    for mode in FieldMode
}
PARSERS: dict[type[BaseModel], Callable[[bytes, Limits], BaseModel]] = {
    TaskStartEvent: parse_task_start,
    TaskEndEvent: parse_task_end,
}
STORABLE_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
TIMESTAMPS = st.datetimes(
    min_value=datetime(1900, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive; timezones= sets UTC
    max_value=datetime(2200, 1, 1),  # noqa: DTZ001 - as above
    timezones=st.just(UTC),
).map(format_timestamp)


def values(field: StandardField, mode: FieldMode) -> st.SearchStrategy[Any]:
    """Values `field` accepts in `mode`, as JSON."""
    cap = field.max_length or 1024
    low, high = (0, INT32_MAX) if field.kind is Kind.DURATION else (INT32_MIN, INT32_MAX)
    text = STORABLE_TEXT.filter(lambda t: len(t) <= cap)
    genesys = mode is FieldMode.GENESYS
    if field.kind in (Kind.INT32, Kind.DURATION):
        integers = st.integers(low, high)
        return integers | integers.map(str) if genesys else integers
    if field.kind is Kind.TEXT:
        return text | st.integers(INT64_MIN, INT64_MAX) if genesys else text
    if field.kind is Kind.LONG_OR_STRING:
        return st.integers(INT64_MIN, INT64_MAX) | text.filter(bool)
    return TIMESTAMPS


def events(model: type[BaseModel], mode: FieldMode) -> st.SearchStrategy[dict[str, Any]]:
    fields = export.EVENT_FIELDS[model.__name__]
    optional = {field.name: values(field, mode) for field in fields}
    return st.fixed_dictionaries({}, optional=optional | {"Survey": st.just({"q": [1, "a"]})})


@pytest.mark.parametrize("mode", list(FieldMode))
@pytest.mark.parametrize("model", [TaskStartEvent, TaskEndEvent])
@given(data=st.data())
def test_generated_valid_events_validate_against_the_schema_of_their_mode(
    model: type[BaseModel], mode: FieldMode, data: st.DataObject
) -> None:
    event = data.draw(events(model, mode))
    PARSERS[model](orjson.dumps(event), Limits(mode=mode))
    assert VALIDATORS[model, mode].is_valid(event), event


@pytest.mark.parametrize("model", [TaskStartEvent, TaskEndEvent])
@given(data=st.data())
def test_what_only_genesys_mode_accepts_fails_validation_and_the_schema_in_strict_mode(
    model: type[BaseModel], data: st.DataObject
) -> None:
    fields = [f for f in export.EVENT_FIELDS[model.__name__] if f.kind in (Kind.INT32, Kind.TEXT)]
    field = data.draw(st.sampled_from(fields))
    value = data.draw(st.integers(0, 99).map(str if field.kind is Kind.INT32 else int))
    event = {field.name: value}
    assert VALIDATORS[model, FieldMode.GENESYS].is_valid(event)
    assert not VALIDATORS[model, FieldMode.STRICT].is_valid(event)
    with pytest.raises(TaskStartValidationError):
        PARSERS[model](orjson.dumps(event), Limits(mode=FieldMode.STRICT))


def test_the_syntax_fixed_reference_example_fits_the_genesys_schema_and_not_the_strict_one() -> (
    None
):
    example = {"interaction_id": 42, "est_duration": 460, "state_id": 24, "task_type": "x"}
    assert VALIDATORS[TaskStartEvent, FieldMode.GENESYS].is_valid(example)
    assert not VALIDATORS[TaskStartEvent, FieldMode.STRICT].is_valid(example)


def test_reserved_keys_are_refused_by_the_schema_as_by_validation() -> None:
    for model, reserved in (
        (TaskStartEvent, RESERVED_ATTACHED_KEYS),
        (TaskEndEvent, RESERVED_END_KEYS),
    ):
        for key in reserved:
            assert not VALIDATORS[model, FieldMode.GENESYS].is_valid({key: 1})
    assert STANDARD_FIELDS.isdisjoint(RESERVED_ATTACHED_KEYS)


def test_lifecycle_replies_validate_against_their_published_schemas() -> None:
    ref = EventRef(source="urn:crm", id="e-2")
    task = StoredTask(
        task_id=7, service_id=5, timestamp="2010-05-20T15:41:52.380Z", event=ref,
        received_at="2010-05-20T15:41:52.391Z", source_topic="t", source_partition=0,
        source_offset=1, completed={"timestamp": "2010-05-20T15:49:32.120Z", "disposition": 3},
        duration=459740, disposition=3, completed_event=ref,
        updated_at="2010-05-20T15:49:32.130Z", tenant="cc-1",
    )  # fmt: skip
    location = "http://x/genesys/1/cs/service/5/tasks/7"
    completed = TaskCompleted(task_id=7, service_id=5, location=location, event=ref, task=task)
    updated = TaskExtensionUpdated(
        task_id=7, service_id=5, location=location, event=ref, task=task,
        extension="Survey", value=[{"q": 1}],
    )  # fmt: skip
    for reply in (completed, updated):
        schema = export.json_schema(type(reply))
        assert jsonschema_rs.validator_for(schema).is_valid(reply.model_dump(mode="json"))
