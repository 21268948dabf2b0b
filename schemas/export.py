"""Write (or check) the generated JSON Schema files in `schemas/jsonschema/`.

Run `python -m schemas.export` (or `ucs-tasks schemas export`) after changing a model;
`--check` writes nothing and fails when a file is stale or missing (a unit test runs it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from schemas.envelope import TaskStartCloudEvent
from schemas.replies import ErrorBody, TaskCreated, TaskRejected
from schemas.task_start import TaskStartEvent

SCHEMA_DIR = Path(__file__).parent / "jsonschema"
"""Where the generated files live."""

MODELS: tuple[type[BaseModel], ...] = (
    TaskStartEvent,
    TaskStartCloudEvent,
    TaskCreated,
    TaskRejected,
    ErrorBody,
)
"""The models with a published JSON Schema, written as `<ModelName>.json`."""


def render(model: type[BaseModel]) -> str:
    """The JSON Schema file text of `model`: pretty, sorted keys, trailing newline."""
    schema = model.model_json_schema()
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def expected_files(directory: Path = SCHEMA_DIR) -> dict[Path, str]:
    """Every generated file and the text it must hold."""
    return {directory / f"{model.__name__}.json": render(model) for model in MODELS}


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
