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

from schemas.replies import StoredTask

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


def _present(task: StoredTask, names: Sequence[str]) -> dict[str, Any]:
    values = ((name, getattr(task, name)) for name in names)
    return {name: value for name, value in values if value is not None}


def task_document(task: StoredTask, extensions: Extensions = Extensions()) -> dict[str, Any]:
    """The task's JSON document (attached data included as `extensions` asks)."""
    document: dict[str, Any] = {"task_id": task.task_id, "service_id": task.service_id}
    document |= _present(task, ("state_id", "task_type", "est_duration"))
    document["started"] = {"timestamp": task.timestamp} | _present(task, _STARTED_FIELDS)
    if extensions.wanted:
        attached = task.attached_data
        document |= (
            attached
            if extensions.everything
            else {k: v for k, v in attached.items() if k in extensions.names}
        )
    return document


def render_task(task: StoredTask, extensions: Extensions = Extensions()) -> bytes:
    """The response body of a task read."""
    return orjson.dumps(task_document(task, extensions))
