"""The service layer: the only place the business rules of starting tasks run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from consumer.domain import (
    EventIdentity,
    IdSpaceExhaustedError,
    Rejection,
    StartCommand,
    Task,
    UnstorableEventError,
)
from consumer.ports import UnitOfWorkFactory
from schemas.replies import ErrorBody, ErrorCode, FieldError


@dataclass(slots=True)
class BatchOutcome:
    """What became of a batch: a task for each accepted identity, the rejections to answer."""

    tasks: dict[EventIdentity, Task] = field(default_factory=dict)
    created: set[EventIdentity] = field(default_factory=set)
    rejections: dict[EventIdentity, Rejection] = field(default_factory=dict)


def _unique(commands: Sequence[StartCommand]) -> list[StartCommand]:
    """First occurrence of each identity wins: duplicates in one batch share one task."""
    seen: dict[EventIdentity, StartCommand] = {}
    for command in commands:
        seen.setdefault(command.identity, command)
    return list(seen.values())


def _refuse(command: StartCommand, code: ErrorCode, message: str) -> Rejection:
    body = ErrorBody(message=message, errors=[FieldError(field="", problem=message)])
    return Rejection(
        identity=command.identity,
        service_id=command.service_id,
        status=code.http_status,
        code=code.value,
        body=body.model_dump(),
        position=command.position,
    )


async def start_tasks(
    commands: Sequence[StartCommand],
    rejections: Sequence[Rejection],
    uow_factory: UnitOfWorkFactory,
) -> BatchOutcome:
    """Persist a batch in one transaction: new tasks get ids, known identities get their task.

    Rejections from validation are recorded in the same transaction. Identities already stored
    (replays, redeliveries) never take a new id. Transient storage errors propagate (retriable).
    """
    outcome = BatchOutcome()
    unique = _unique(commands)
    refused = list(rejections)
    async with uow_factory() as uow:
        try:
            stored = await uow.tasks.add_or_get(unique) if unique else {}
        except IdSpaceExhaustedError:
            await uow.rollback()
            existing = await uow.tasks.get_by_identity([c.identity for c in unique])
            stored = {identity: (task, False) for identity, task in existing.items()}
            message = "the task id space (1..2147483647) is exhausted: no new task can be created"
            refused += [
                _refuse(c, ErrorCode.ID_SPACE_EXHAUSTED, message)
                for c in unique
                if c.identity not in stored
            ]
        except UnstorableEventError:
            await uow.rollback()
            stored, unstorable = await _isolate(unique, uow_factory)
            refused += unstorable
        if refused:
            await uow.tasks.record_rejections(refused)
        await uow.commit()
    for identity, (task, created) in stored.items():
        outcome.tasks[identity] = task
        if created:
            outcome.created.add(identity)
    outcome.rejections = {r.identity: r for r in refused}
    return outcome


async def _isolate(
    commands: Sequence[StartCommand], uow_factory: UnitOfWorkFactory
) -> tuple[dict[EventIdentity, tuple[Task, bool]], list[Rejection]]:
    """Slow path after the database refused a batch's data: one transaction per event."""
    stored: dict[EventIdentity, tuple[Task, bool]] = {}
    refused: list[Rejection] = []
    for command in commands:
        async with uow_factory() as uow:
            try:
                stored.update(await uow.tasks.add_or_get([command]))
            except UnstorableEventError as exc:
                message = f"the event could not be stored: {exc}"
                refused.append(_refuse(command, ErrorCode.INVALID_FIELD, message))
                continue
            await uow.commit()
    return stored, refused
