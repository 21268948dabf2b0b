"""A stored task as the Context Services API renders it ("Query Task by ID").

`task_id`, `service_id`, `state_id`, `task_type`, `est_duration`, then `started` (the start
event: `timestamp`, `session_id`, `interaction_id`, application/resource/media fields), then the
attached data as top-level keys when asked for with `?extensions=name1,name2` or `?extensions=*`.
Fields the start event did not give are omitted. Attached data comes back verbatim: the stored
JSON text is parsed with its key order kept and re-encoded by the same encoder that stored it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from consumer.domain import Task
from schemas.task_start import format_timestamp

ALL = "*"
_STARTED_FIELDS = (
    "session_id",
    "interaction_id",
    "application_type",
    "application_id",
    "resource_type",
    "resource_id",
    "media_type",
)


@dataclass(frozen=True, slots=True)
class Extensions:
    """Which attached-data keys a read returns: all of them, the named ones, or none."""

    everything: bool = False
    names: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, values: Sequence[str]) -> Extensions:
        """From the `extensions` query values: comma-separated exact key names, or `*`."""
        names = frozenset(name for value in values for name in value.split(",") if name)
        return cls(everything=ALL in names, names=names - {ALL})

    @property
    def wanted(self) -> bool:
        """Whether any attached data is asked for."""
        return self.everything or bool(self.names)


def _present(fields: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    return {name: fields[name] for name in names if fields.get(name) is not None}


def task_document(task: Task, extensions: Extensions = Extensions()) -> dict[str, Any]:
    """The task's JSON document (attached data included as `extensions` asks)."""
    fields = task.fields
    document: dict[str, Any] = {"task_id": task.task_id, "service_id": task.service_id}
    document |= _present(fields, ("state_id", "task_type", "est_duration"))
    started = {"timestamp": format_timestamp(fields["timestamp"])}
    document["started"] = started | _present(fields, _STARTED_FIELDS)
    if extensions.wanted:
        attached: dict[str, Any] = orjson.loads(task.attached_data_json)
        document |= (
            attached
            if extensions.everything
            else {k: v for k, v in attached.items() if k in extensions.names}
        )
    return document


def render_task(task: Task, extensions: Extensions = Extensions()) -> bytes:
    """The response body of a task read."""
    return orjson.dumps(task_document(task, extensions))
