"""Domain objects in the contract's shapes: what replies carry and what the read side returns.

One layout of a persisted task (`schemas.replies.StoredTask`), used by the task-created reply,
the created-events log and the bridge's reads alike.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson

from consumer.domain import Completion, Rejection, Task
from schemas.replies import EventRef, StoredTask, TaskRejected
from schemas.task_start import format_timestamp

# Many timestamps of a batch are equal (received_at is the transaction's time): render each once.
_render = functools.lru_cache(maxsize=4096)(format_timestamp)


def _completion_json(completion: Completion | None) -> dict[str, Any]:
    if completion is None:
        return dict.fromkeys(_COMPLETION_KEYS)
    return {
        "completed": orjson.Fragment(completion.end_event_json),
        "duration": completion.duration_ms,
        "disposition": completion.disposition,
        "disposition_desc": completion.disposition_desc,
        "completed_event": {"source": completion.identity.source, "id": completion.identity.id},
    }


_COMPLETION_KEYS = ("completed", "duration", "disposition", "disposition_desc", "completed_event")


def task_json(task: Task) -> dict[str, Any]:
    """The persisted task as StoredTask lays it out (attached data and end event verbatim)."""
    out = {"task_id": task.task_id, "service_id": task.service_id, **task.fields}
    out["timestamp"] = _render(task.fields["timestamp"])  # keeps its place among the fields
    identity, position = task.identity, task.position
    out["attached_data"] = orjson.Fragment(task.attached_data_json)
    out["event"] = {"source": identity.source, "id": identity.id}
    out["received_at"] = _render(task.received_at)
    out["source_topic"] = position.topic
    out["source_partition"] = position.partition
    out["source_offset"] = position.offset
    out["tenant"] = task.tenant
    out["group"] = task.group
    out.update(_completion_json(task.completion))
    out["updated_at"] = None if task.updated_at is None else _render(task.updated_at)
    return out


def stored_task(task: Task) -> StoredTask:
    """The persisted task as the contract's model (attached data parsed, key order kept)."""
    return StoredTask.model_validate_json(orjson.dumps(task_json(task)))


def task_rejected(rejection: Rejection) -> TaskRejected:
    """A recorded rejection as the contract's task-rejected reply (without a correlation id)."""
    return TaskRejected.model_validate(
        {
            "service_id": rejection.service_id,
            "status": rejection.status,
            "code": rejection.code,
            "task_id": rejection.task_id,
            "event": EventRef(source=rejection.identity.source, id=rejection.identity.id),
            "error": rejection.body,
        }
    )
