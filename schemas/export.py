"""Write (or check) the generated JSON Schema files in `schemas/jsonschema/`.

Run `python -m schemas.export` (or `ucs-tasks schemas export`) after changing a model;
`--check` writes nothing and fails when a file is stale or missing (a unit test runs it).

`<Model>.json` describes the default `genesys` field mode. A model whose schema holds a task
event's standard fields also gets `<Model>.strict.json`, for `strict` mode (`UCS_FIELD_MODE`):
the same document with those fields' types narrowed (integers only as JSON integers, strings
only as JSON strings). Replies carry values in their canonical types, so they have one file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel

from schemas import asyncapi
from schemas._task_fields import property_schema
from schemas.envelope import TaskStartCloudEvent
from schemas.extension import TaskExtensionValue
from schemas.fields import StandardField
from schemas.limits import FieldMode
from schemas.replies import (
    ErrorBody,
    TaskCompleted,
    TaskCreated,
    TaskExtensionUpdated,
    TaskRejected,
)
from schemas.task_end import TaskEndEvent
from schemas.task_start import TaskStartEvent

SCHEMA_DIR = Path(__file__).parent / "jsonschema"
"""Where the generated files live."""

MODELS: tuple[type[BaseModel], ...] = (
    TaskStartEvent,
    TaskEndEvent,
    TaskExtensionValue,
    TaskStartCloudEvent,
    TaskCreated,
    TaskCompleted,
    TaskExtensionUpdated,
    TaskRejected,
    ErrorBody,
)
"""The models with a published JSON Schema, written as `<ModelName>.json`."""

EVENT_FIELDS: Final[dict[str, tuple[StandardField, ...]]] = {
    model.__name__: model.event_rules.fields for model in (TaskStartEvent, TaskEndEvent)
}
"""The task events' standard fields, by the title of their schema."""

_COMMENT: Final = {
    FieldMode.GENESYS: "Field mode genesys (the default): an integer field also takes a string "
    "of decimal digits, a string field also takes a JSON integer. See *.strict.json for strict.",
    FieldMode.STRICT: "Field mode strict (UCS_FIELD_MODE=strict): integers only as JSON "
    "integers, strings only as JSON strings.",
}


def _events_in(schema: dict[str, Any]) -> list[dict[str, Any]]:
    candidates = [schema, *schema.get("$defs", {}).values()]
    return [part for part in candidates if part.get("title") in EVENT_FIELDS]


def json_schema(
    model: type[BaseModel],
    mode: FieldMode = FieldMode.GENESYS,
    ref_template: str = "#/$defs/{model}",
) -> dict[str, Any]:
    """The JSON Schema of `model` with the task events' standard fields typed for `mode`."""
    schema = model.model_json_schema(ref_template=ref_template)
    events = _events_in(schema)
    if events:
        schema["$comment"] = _COMMENT[mode]
    if mode is FieldMode.GENESYS:
        return schema  # the models' own schemas describe genesys mode
    for event in events:
        properties = event["properties"]
        for field in EVENT_FIELDS[event["title"]]:
            kept = {k: properties[field.name][k] for k in ("description", "title")}
            properties[field.name] = {**property_schema(field, mode), **kept}
    return schema


def has_strict_variant(model: type[BaseModel]) -> bool:
    """Whether `model`'s schema holds a task event's standard fields (so depends on the mode)."""
    return bool(_events_in(model.model_json_schema()))


def _text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render(model: type[BaseModel], mode: FieldMode = FieldMode.GENESYS) -> str:
    """The JSON Schema file text of `model` in `mode`: pretty, sorted keys, trailing newline."""
    return _text(json_schema(model, mode))


def expected_files(directory: Path = SCHEMA_DIR) -> dict[Path, str]:
    """Every generated file and the text it must hold (the AsyncAPI document beside them)."""
    files = {directory / f"{model.__name__}.json": render(model) for model in MODELS}
    files[asyncapi.DOCUMENT if directory == SCHEMA_DIR else directory / "asyncapi.json"] = (
        asyncapi.render()
    )
    files.update(
        (directory / f"{model.__name__}.strict.json", render(model, FieldMode.STRICT))
        for model in MODELS
        if has_strict_variant(model)
    )
    return files


def main(check: bool = False, directory: Path = SCHEMA_DIR) -> int:
    """Write the files (0), or with `check` compare them: 1 and a list if any is stale."""
    stale: list[str] = []
    for path, text in expected_files(directory).items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if check:
            stale.append(f"{'missing' if current is None else 'stale'}: {path}")
        else:
            directory.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print("JSON Schema files out of date (run `ucs-tasks schemas export`):", file=sys.stderr)
        for line in stale:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    """`python -m schemas.export [--check]`."""
    parser = argparse.ArgumentParser(prog="python -m schemas.export", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a file is stale or missing")
    return main(check=parser.parse_args(argv).check)


if __name__ == "__main__":
    sys.exit(cli())
