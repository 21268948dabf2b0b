"""A stored task as the Context Services API renders it (Query Task by ID, Query Tasks).

Where each standard field goes comes from the one field table (`schemas.fields`, its
`placement`):
- at the top level: `task_id`, `service_id`, then the start's task-level fields (`state_id`,
  `task_type`, `est_duration`), then `started`, then, once the task is completed,
  `completed`, `duration` (milliseconds from start to completion) and the end's task-level
  fields the top level does not already take from the start (`disposition`,
  `disposition_desc`);
- `started`: the start event's `timestamp` and its event-level fields (`session_id`,
  `interaction_id`, application, resource and media);
- `completed`: the Task End Event as stored, `timestamp` first (UTC, milliseconds), without the
  fields the top level shows for it (`disposition`, `disposition_desc`). An end event's own
  `state_id` or `task_type` stays in `completed`: the top level keeps the start's;
- then the attached data as top-level keys, when asked for with `?extensions=name1,name2` or
  `?extensions=*`.
Fields an event did not give are omitted. Attached data comes back verbatim: the stored JSON
text is parsed with its key order kept and re-encoded by the same encoder that stored it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from schemas.fields import END_FIELDS, START_FIELDS, Placement, placed
from schemas.replies import StoredTask

ALL = "*"

TOP_FROM_START: Final = placed(START_FIELDS, Placement.TASK)
"""The start's fields at the top level: `state_id`, `task_type`, `est_duration`."""
TOP_FROM_END: Final = tuple(
    name for name in placed(END_FIELDS, Placement.TASK) if name not in TOP_FROM_START
)
"""The end's fields at the top level: `disposition`, `disposition_desc`."""
STARTED_FIELDS: Final = tuple(
    name for name in placed(START_FIELDS, Placement.EVENT) if name != "timestamp"
)
"""The start's fields inside `started`, after its `timestamp`."""


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


def _completed(end_event: dict[str, Any]) -> dict[str, Any]:
    rest = {k: v for k, v in end_event.items() if k not in TOP_FROM_END and k != "timestamp"}
    return {"timestamp": end_event["timestamp"], **rest}


def task_document(task: StoredTask, extensions: Extensions = Extensions()) -> dict[str, Any]:
    """The task's JSON document (attached data included as `extensions` asks)."""
    document: dict[str, Any] = {"task_id": task.task_id, "service_id": task.service_id}
    document |= _present(task, TOP_FROM_START)
    document["started"] = {"timestamp": task.timestamp} | _present(task, STARTED_FIELDS)
    if task.completed is not None:
        document["completed"] = _completed(task.completed)
        document |= _present(task, ("duration", *TOP_FROM_END))
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


def render_tasks(tasks: Sequence[StoredTask], extensions: Extensions = Extensions()) -> bytes:
    """The response body of Query Tasks: a JSON array of task documents, in the given order."""
    return orjson.dumps([task_document(task, extensions) for task in tasks])
