"""The AsyncAPI 3 document: valid against the AsyncAPI 3.0.0 schema, every reference resolves,
and it is generated from the same models as the JSON Schemas (never stale)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from schemas import asyncapi, wire

SPEC = Path(__file__).resolve().parents[1] / "data" / "asyncapi-3.0.0.schema.json"
"""The official AsyncAPI 3.0.0 JSON Schema (npm @asyncapi/specs 6.11.1, Apache-2.0)."""


@pytest.fixture(scope="module")
def validator() -> Any:
    return jsonschema_rs.validator_for(json.loads(SPEC.read_text()))


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_document_is_valid_asyncapi_3(validator: Any) -> None:
    errors = [e.message for e in validator.iter_errors(asyncapi.document())]
    assert not errors, errors[:5]


def test_the_validator_would_catch_an_invalid_document(validator: Any) -> None:
    broken = copy.deepcopy(asyncapi.document())
    broken["operations"]["receiveTaskRequests"]["action"] = "consume"
    assert not validator.is_valid(broken)


def test_every_reference_resolves() -> None:
    document = asyncapi.document()
    refs = _refs(document)
    assert len(refs) > 20
    for ref in refs:
        assert ref.startswith("#/"), ref
        assert _resolve(document, ref) is not None, ref


def test_every_channel_of_the_service_is_described_with_its_default_topic() -> None:
    channels = asyncapi.document()["channels"]
    addresses = {name: channel["address"] for name, channel in channels.items()}
    assert addresses == {
        "requests": wire.DEFAULT_REQUEST_TOPIC,
        "taskEvents": wire.DEFAULT_CREATED_TOPIC,
        "rejections": wire.DEFAULT_REJECTED_TOPIC,
        "deadLetters": wire.DEFAULT_DEAD_LETTER_TOPIC,
        "replies": None,
    }
    requests = set(channels["requests"]["messages"])
    assert requests == {"TaskStart", "TaskStartStructured", "TaskEnd", "TaskExtension"}


def test_the_published_file_is_the_generated_document() -> None:
    assert asyncapi.DOCUMENT.read_text() == asyncapi.render()
