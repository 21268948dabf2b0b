"""The standard-field tuples (schemas/fields.py) are the one definition the models follow."""

from __future__ import annotations

import ast
import inspect
from types import ModuleType

import pytest

from schemas import _events, task_end, task_start
from schemas.fields import (
    ALL_FIELD_NAMES,
    END_BY_NAME,
    END_FIELDS,
    LONG_OR_STRING_NAMES,
    PYTHON_TYPES,
    RESERVED_NAMES,
    START_BY_NAME,
    START_FIELDS,
    TASK_KEYS,
    Kind,
    Placement,
    StandardField,
    by_name,
    names,
    of_kind,
    placed,
)
from schemas.replies import StoredTask
from schemas.task_end import RESERVED_END_KEYS, TaskEndEvent
from schemas.task_start import RESERVED_ATTACHED_KEYS, STANDARD_FIELDS, TaskStartEvent

EVENTS = [
    (TaskStartEvent, START_FIELDS, task_start),
    (TaskEndEvent, END_FIELDS, task_end),
]


def test_the_start_fields_are_the_contract_table_in_its_order() -> None:
    assert names(START_FIELDS) == (
        "state_id",
        "task_type",
        "session_id",
        "interaction_id",
        "application_type",
        "application_id",
        "resource_type",
        "resource_id",
        "media_type",
        "est_duration",
        "timestamp",
    )
    assert frozenset(names(START_FIELDS)) == STANDARD_FIELDS


def test_the_end_fields_have_the_lifecycle_contract_types_and_length_caps() -> None:
    kinds = {field.name: (field.kind, field.max_length) for field in END_FIELDS}
    assert kinds == {
        "state_id": (Kind.INT32, None),
        "task_type": (Kind.LONG_OR_STRING, None),
        "session_id": (Kind.TEXT, 32),
        "interaction_id": (Kind.TEXT, 50),
        "application_type": (Kind.LONG_OR_STRING, None),
        "application_id": (Kind.INT32, None),
        "resource_type": (Kind.LONG_OR_STRING, None),
        "resource_id": (Kind.INT32, None),
        "media_type": (Kind.LONG_OR_STRING, None),
        "disposition": (Kind.LONG_OR_STRING, None),
        "disposition_desc": (Kind.TEXT, 64),
        "timestamp": (Kind.TIMESTAMP, None),
    }


def test_the_task_representation_puts_ids_types_and_outcomes_at_task_level() -> None:
    assert placed(START_FIELDS, Placement.TASK) == ("state_id", "task_type", "est_duration")
    assert placed(START_FIELDS, Placement.EVENT) == (
        "session_id",
        "interaction_id",
        "application_type",
        "application_id",
        "resource_type",
        "resource_id",
        "media_type",
        "timestamp",
    )
    assert placed(END_FIELDS, Placement.TASK) == (
        "state_id",
        "task_type",
        "disposition",
        "disposition_desc",
    )


def test_the_lookups_answer_from_the_tuples() -> None:
    assert START_BY_NAME["est_duration"].kind is Kind.DURATION
    assert END_BY_NAME["session_id"].max_length == 32
    assert list(by_name(END_FIELDS)) == list(names(END_FIELDS))
    assert of_kind(START_FIELDS, Kind.INT32) == ("state_id", "application_id", "resource_id")
    assert {
        "task_type",
        "application_type",
        "resource_type",
        "media_type",
        "disposition",
    } == LONG_OR_STRING_NAMES
    with pytest.raises(TypeError):
        START_BY_NAME["x"] = START_FIELDS[0]  # type: ignore[index]  # read-only on purpose


def test_standard_fields_are_immutable_values() -> None:
    field = START_FIELDS[0]
    with pytest.raises(AttributeError):
        field.name = "other"  # type: ignore[misc]  # frozen on purpose
    assert field == StandardField(field.name, field.kind, field.description, field.placement)


@pytest.mark.parametrize(("model", "fields", "module"), EVENTS)
def test_each_event_model_has_exactly_its_tuple_s_fields_in_order_with_their_descriptions(
    model: type[TaskStartEvent], fields: tuple[StandardField, ...], module: ModuleType
) -> None:
    assert list(model.model_fields) == list(names(fields))
    for field in fields:
        assert model.model_fields[field.name].description == field.description
    assert model.model_json_schema()["title"] == model.__name__
    assert model.__module__ == module.__name__


def _typing_view(module: ModuleType, class_name: str) -> dict[str, str]:
    """The annotations of a class declared under `if TYPE_CHECKING:`, its typing bases' too."""
    tree = ast.parse(inspect.getsource(module))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for item in node.body:
                if isinstance(item, ast.ClassDef) and item.name == class_name:
                    inherited: dict[str, str] = {}
                    for base in item.bases:
                        if ast.unparse(base) == "SharedFields":
                            inherited = _typing_view(_events, "SharedFields")
                    return inherited | {
                        ast.unparse(stmt.target): ast.unparse(stmt.annotation)
                        for stmt in item.body
                        if isinstance(stmt, ast.AnnAssign)
                    }
    raise AssertionError(f"no TYPE_CHECKING view of {class_name} in {module.__name__}")


@pytest.mark.parametrize(("model", "fields", "module"), EVENTS)
def test_the_static_typing_view_of_each_model_matches_its_tuple(
    model: type[TaskStartEvent], fields: tuple[StandardField, ...], module: ModuleType
) -> None:
    spelled = {
        Kind.INT32: "int | None",
        Kind.DURATION: "int | None",
        Kind.TEXT: "str | None",
        Kind.LONG_OR_STRING: "int | str | None",
        Kind.TIMESTAMP: "datetime | None",
    }
    assert _typing_view(module, model.__name__) == {f.name: spelled[f.kind] for f in fields}
    assert {f.kind for f in fields} <= set(PYTHON_TYPES)


def test_stored_task_holds_every_start_field_in_its_canonical_type() -> None:
    stored = StoredTask.model_fields
    for field in START_FIELDS:
        expected = str if field.kind is Kind.TIMESTAMP else PYTHON_TYPES[field.kind]
        assert stored[field.name].annotation == expected, field.name


def test_stored_task_holds_the_end_event_s_task_level_outcome_in_its_canonical_type() -> None:
    stored = StoredTask.model_fields
    for name in placed(END_FIELDS, Placement.TASK):
        assert stored[name].annotation == PYTHON_TYPES[END_BY_NAME[name].kind], name


def test_reserved_names_are_the_task_s_own_keys_and_every_standard_field() -> None:
    assert {"task_id", "service_id", "started", "completed", "extensions", "duration"} == TASK_KEYS
    assert RESERVED_NAMES == TASK_KEYS | ALL_FIELD_NAMES
    assert TASK_KEYS | {"disposition", "disposition_desc"} == RESERVED_ATTACHED_KEYS
    assert TASK_KEYS | {"est_duration"} == RESERVED_END_KEYS
