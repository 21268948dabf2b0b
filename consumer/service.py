"""The service layer: the only place the business rules of starting tasks run.

`handle` takes one command per consumed record and answers one outcome per command, in the same
order; the consume loop only moves them. A new kind of event (ending a task, updating an
extension) is a new command kind here and a new outcome kind, not a new loop.
"""

from __future__ import annotations

from collections.abc import Sequence

from consumer.domain import (
    Command,
    EventIdentity,
    IdSpaceExhaustedError,
    Outcome,
    Rejection,
    StartCommand,
    Task,
    UnstorableEventError,
)
from consumer.ports import UnitOfWork, UnitOfWorkFactory
from schemas.replies import ErrorBody, ErrorCode, FieldError

Stored = dict[EventIdentity, Task]


async def handle(commands: Sequence[Command], uow_factory: UnitOfWorkFactory) -> list[Outcome]:
    """Settle a batch in one transaction; the outcome of each command, in order.

    - a start command gets its identity's task: a new one (ids in command order), or the one
      stored before, whatever body it came with now (replays and redeliveries take no id);
    - a rejection from validation is answered as such, unless its identity already has a task
      (stored before, or created by this batch): then the identity wins and the task answers;
    - an undecodable record stays what it is (the loop dead-letters it).

    Rejections are recorded in the same transaction. Transient storage errors propagate
    (retriable); the whole batch is then settled again, with the same answers.
    """
    starts = [c for c in commands if isinstance(c, StartCommand)]
    refusals = [c for c in commands if isinstance(c, Rejection)]
    tasks, refused = await _settle(starts, refusals, uow_factory)
    outcomes: list[Outcome] = []
    for command in commands:
        if isinstance(command, StartCommand):
            task = tasks.get(command.identity)
            outcomes.append(task if task is not None else refused[command.identity])
        elif isinstance(command, Rejection):
            outcomes.append(tasks.get(command.identity, command))
        else:
            outcomes.append(command)
    return outcomes


async def _settle(
    starts: Sequence[StartCommand], refusals: Sequence[Rejection], uow_factory: UnitOfWorkFactory
) -> tuple[Stored, dict[EventIdentity, Rejection]]:
    """(every identity's task, the start commands refused by storage) after one transaction."""
    unique = _unique(starts)
    refused: dict[EventIdentity, Rejection] = {}
    if not unique and not refusals:  # dead letters only: no transaction
        return {}, refused
    async with uow_factory() as uow:
        try:
            tasks = await _add_or_get(uow, unique)
        except IdSpaceExhaustedError:
            await uow.rollback()
            tasks = await uow.tasks.get_by_identity([c.identity for c in unique])
            message = "the task id space (1..2147483647) is exhausted: no new task can be created"
            for c in unique:
                if c.identity not in tasks:
                    refused[c.identity] = _refuse(c, ErrorCode.ID_SPACE_EXHAUSTED, message)
        except UnstorableEventError:
            await uow.rollback()
            tasks, unstorable = await _isolate(unique, uow_factory)
            refused.update((r.identity, r) for r in unstorable)
        unknown = [r.identity for r in refusals if r.identity not in tasks]
        if unknown:  # the identity wins: a stored task answers whatever body came back
            tasks.update(await uow.tasks.get_by_identity(unknown))
        recorded = [*refused.values(), *(r for r in refusals if r.identity not in tasks)]
        if recorded:
            await uow.tasks.record_rejections(recorded)
        await uow.commit()
    return tasks, refused


async def _add_or_get(uow: UnitOfWork, commands: Sequence[StartCommand]) -> Stored:
    if not commands:
        return {}
    stored = await uow.tasks.add_or_get(commands)
    return {identity: task for identity, (task, _) in stored.items()}


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


async def _isolate(
    commands: Sequence[StartCommand], uow_factory: UnitOfWorkFactory
) -> tuple[Stored, list[Rejection]]:
    """Slow path after the database refused a batch's data: one transaction per event."""
    stored: Stored = {}
    refused: list[Rejection] = []
    for command in commands:
        async with uow_factory() as uow:
            try:
                stored.update(await _add_or_get(uow, [command]))
            except UnstorableEventError as exc:
                message = f"the event could not be stored: {exc}"
                refused.append(_refuse(command, ErrorCode.INVALID_FIELD, message))
                continue
            await uow.commit()
    return stored, refused
