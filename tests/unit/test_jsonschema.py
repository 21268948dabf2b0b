"""The generated JSON Schema files (schemas/jsonschema/) match the models."""

from __future__ import annotations

from pathlib import Path

import orjson

from schemas import export
from schemas.task_start import RESERVED_ATTACHED_KEYS, TaskStartEvent


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
    assert properties["state_id"]["maximum"] == 2**31 - 1
    assert properties["est_duration"]["minimum"] == 0
