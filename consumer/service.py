"""The service layer: the only place the business rules of tasks run (start, end, update).

`handle` takes one command per consumed record and answers one outcome per command, in the same
order; the consume loop only moves them. A new kind of event (ending a task, updating an
extension) is a new command kind here and a new outcome kind, not a new loop.
"""

from __future__ import annotations

from collections.abc import Sequence

from consumer.domain import (
    ChangeCommand,
    Changed,
    ChangeOutcome,
    ChangeStatus,
    Command,
    EndCommand,
    EventIdentity,
    ExtensionCommand,
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
    - an end or extension update changes its task (`refused_change` says what it refuses), after
      the batch's starts (so a start and an end of one task in a batch apply in that order);
    - an undecodable record stays what it is (the loop dead-letters it).

    Starts and rejections share one transaction, changes take a second one when there are
    any. Transient storage errors propagate (retriable); the whole batch is then settled again,
    with the same answers (replays change nothing).
    """
    starts = [c for c in commands if isinstance(c, StartCommand)]
    refusals = [c for c in commands if isinstance(c, Rejection)]
    changes = [c for c in commands if isinstance(c, EndCommand | ExtensionCommand)]
    tasks, refused = await _settle(starts, refusals, uow_factory)
    changed = iter(await _change(changes, uow_factory) if changes else [])
    outcomes: list[Outcome] = []
    for command in commands:
        if isinstance(command, StartCommand):
            task = tasks.get(command.identity)
            outcomes.append(task if task is not None else refused[command.identity])
        elif isinstance(command, Rejection):
            outcomes.append(tasks.get(command.identity, command))
        elif isinstance(command, EndCommand | ExtensionCommand):
            outcomes.append(next(changed))
        else:
            outcomes.append(command)
    return outcomes


async def _change(
    commands: Sequence[ChangeCommand], uow_factory: UnitOfWorkFactory
) -> list[Outcome]:
    """Apply the changes in one transaction (one round trip); one outcome each, in order."""
    async with uow_factory() as uow:
        try:
            results = await uow.tasks.apply_changes(commands)
        except UnstorableEventError:
            await uow.rollback()
            return await _isolate_changes(commands, uow_factory)
        outcomes = [_answer(c, r) for c, r in zip(commands, results, strict=True)]
        await _record(uow, results, outcomes)
        await uow.commit()
    return outcomes


async def _record(
    uow: UnitOfWork, results: Sequence[ChangeOutcome], outcomes: Sequence[Outcome]
) -> None:
    """Record the final refusals (409, 400). An unknown task is answered but not recorded: an
    end that came before its start may be sent again, under its own identity, once it exists."""
    final = {ChangeStatus.ALREADY_COMPLETED, ChangeStatus.END_BEFORE_START}
    refused = {
        o.identity: o
        for r, o in zip(results, outcomes, strict=True)
        if r.status in final and isinstance(o, Rejection)
    }
    if refused:
        await uow.tasks.record_rejections(list(refused.values()))


def _answer(command: ChangeCommand, result: ChangeOutcome) -> Outcome:
    status = result.status
    if status in (ChangeStatus.APPLIED, ChangeStatus.REPLAYED):
        assert result.task is not None and result.change is not None  # noqa: PT018, S101 - set
        return Changed(result.task, result.change)
    if status is ChangeStatus.STORED_START and result.task is not None:
        return result.task
    if status is ChangeStatus.STORED_REJECTION and result.rejection is not None:
        return result.rejection
    return refused_change(command, result)


async def _isolate_changes(
    commands: Sequence[ChangeCommand], uow_factory: UnitOfWorkFactory
) -> list[Outcome]:
    """Slow path after the database refused a change's data: one transaction per change."""
    outcomes: list[Outcome] = []
    for command in commands:
        async with uow_factory() as uow:
            try:
                [result] = await uow.tasks.apply_changes([command])
            except UnstorableEventError as exc:
                message = f"the event could not be stored: {exc}"
                outcomes.append(_refuse(command, ErrorCode.INVALID_FIELD, message))
                continue
            outcome = _answer(command, result)
            await _record(uow, [result], [outcome])
            await uow.commit()
        outcomes.append(outcome)
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


def _refuse(
    command: StartCommand | ChangeCommand, code: ErrorCode, message: str, field: str = ""
) -> Rejection:
    body = ErrorBody(message=message, errors=[FieldError(field=field, problem=message)])
    return Rejection(
        identity=command.identity,
        service_id=command.service_id,
        status=code.http_status,
        code=code.value,
        body=body.model_dump(),
        position=command.position,
        task_id=None if isinstance(command, StartCommand) else command.task_id,
    )


def refused_change(command: ChangeCommand, result: ChangeOutcome) -> Rejection:
    """The rejection of an end or update the task refused (404, 409 or 400)."""
    what = "completed" if isinstance(command, EndCommand) else "updated"
    task = f"task {command.task_id} of service {command.service_id}"
    if result.status is ChangeStatus.ALREADY_COMPLETED:
        done = result.task.completion if result.task is not None else None
        by = f" by event {done.identity.source} / {done.identity.id}" if done is not None else ""
        message = (
            f"Conflict: {task} is already completed{by}; the first completion stands "
            "(an end sent again with the same identity is answered with it)."
        )
        return _refuse(command, ErrorCode.TASK_COMPLETED, message, "task_id")
    if result.status is ChangeStatus.END_BEFORE_START:
        message = (
            f"Invalid end event: its timestamp is before the start of {task}; a task ends "
            "after it starts."
        )
        return _refuse(command, ErrorCode.END_BEFORE_START, message, "timestamp")
    message = (
        f"Not found: {task} does not exist (or belongs to another service or tenant), so it "
        f"cannot be {what}. An end or update that arrived before its start is refused: send it "
        "again once the task exists."
    )
    return _refuse(command, ErrorCode.TASK_NOT_FOUND, message, "task_id")


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
