"""Changes of existing tasks (Complete Task, Update Task Extension), batched in order.

A batch travels as ONE json parameter to `apply_task_changes` (migration 0003), which applies
the changes in the order given, in one round trip, and answers one row per change: its outcome,
the change as recorded, and the task after it (or the stored rejection). The function's input
fields are built here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from consumer.db.reads import json_row_to_task, row_to_rejection
from consumer.db.tables import APPLY_CHANGES_FUNCTION
from consumer.domain import (
    ChangeCommand,
    ChangeKind,
    ChangeOutcome,
    ChangeStatus,
    EndCommand,
    EventIdentity,
    ExtensionCommand,
    RecordedChange,
)
from schemas.fields import END_FIELDS, names
from schemas.task_start import format_timestamp

_END_HEAD: Final = tuple(name for name in names(END_FIELDS) if name != "timestamp")
"""The end event's standard fields stored before its timestamp, in the contract's order."""

_APPLY = text(
    "SELECT change_ord, outcome, change_task_id, change_kind, change_extension,"  # noqa: S608 - a fixed name
    f" change_value, task_row, rejection_row FROM {APPLY_CHANGES_FUNCTION}(CAST(:changes AS json))"
    " ORDER BY change_ord"
)


def _end_input(command: EndCommand) -> dict[str, Any]:
    fields = command.fields
    head = {name: fields[name] for name in _END_HEAD if name in fields}
    disposition = head.get("disposition")
    row: dict[str, Any] = {
        "kind": ChangeKind.END.value,
        "head": head,
        "attached": command.attached_data,
        "disposition_desc": head.get("disposition_desc"),
    }
    if isinstance(disposition, int):
        row["disposition_id"] = disposition
    elif disposition is not None:
        row["disposition_name"] = disposition
    if fields.get("timestamp") is not None:
        row["at"] = format_timestamp(fields["timestamp"])
    return row


def _extension_input(command: ExtensionCommand) -> dict[str, Any]:
    return {"kind": ChangeKind.EXTENSION.value, "extension": command.name, "value": command.value}


def change_input(command: ChangeCommand) -> dict[str, Any]:
    """One element of the function's JSON array; absent fields are missing (NULL)."""
    row = _end_input(command) if isinstance(command, EndCommand) else _extension_input(command)
    row["event_source"] = command.identity.source
    row["event_id"] = command.identity.id
    row["service_id"] = command.service_id
    row["task_id"] = command.task_id
    if command.tenant is not None:
        row["tenant"] = command.tenant
    return row


def _outcome(identity: EventIdentity, row: Sequence[Any]) -> ChangeOutcome:
    # By position, in `_APPLY`'s column order: a row's attribute access costs more (per change).
    _, outcome, task_id, kind, extension, value, task_row, rejection_row = row
    status = ChangeStatus(outcome)
    change = None
    if kind is not None:
        change = RecordedChange(identity, task_id, ChangeKind(kind), extension, value)
    task = None if task_row is None else json_row_to_task(task_row)
    rejection = None
    if rejection_row is not None:
        rejection = row_to_rejection(orjson.loads(rejection_row))
    return ChangeOutcome(identity, status, task, change, rejection)


async def apply_changes(
    conn: AsyncConnection, commands: Sequence[ChangeCommand]
) -> list[ChangeOutcome]:
    """Apply `commands` in order in one round trip; one outcome per command, in that order.

    An identity given again in the same batch answers what its first occurrence got (a replay
    of it when that one was applied): the function takes each identity once.
    """
    if not commands:
        return []
    first: dict[EventIdentity, ChangeCommand] = {}
    for command in commands:
        first.setdefault(command.identity, command)
    unique = list(first.values())
    batch = orjson.dumps([change_input(c) for c in unique]).decode()
    rows = (await conn.execute(_APPLY, {"changes": batch})).all()
    outcomes = {c.identity: _outcome(c.identity, row) for c, row in zip(unique, rows, strict=True)}
    answered: list[ChangeOutcome] = []
    seen: set[EventIdentity] = set()
    for command in commands:
        outcome = outcomes[command.identity]
        if command.identity in seen and outcome.status is ChangeStatus.APPLIED:
            outcome = outcome._replace(status=ChangeStatus.REPLAYED)
        seen.add(command.identity)
        answered.append(outcome)
    return answered
