"""Which state of each task `rebuild` keeps, as the task events log is read in any order.

Every record of the log carries the whole task after a change (its start, completion or an
extension update), so the last state of each task wins: the one with the latest `updated_at`
(the time of the change, set by the database), and among equal ones the record read last. The
records of one task share a partition (they are keyed by its service id), so "read last" is
"later in the log"; `updated_at` also orders a task's states where a reply was published after
a newer one (a start answered again from a snapshot taken before a change of the same batch).

The log may also span several lives of the database (it was reset and ids were given again): a
task id or a start identity met with a different task keeps the most recently received one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from schemas.replies import StoredTask

Identity = tuple[str, str]
Verdict = Literal["new", "update", "older", "stale"]


@dataclass(slots=True)
class _Held:
    identity: Identity
    received_at: str
    state: tuple[str, int]
    """(updated_at or "", the order it was read in): the larger is the newer state."""


@dataclass
class TaskLog:
    """The task kept for each task id and start identity, and which state of it."""

    by_id: dict[int, _Held] = field(default_factory=dict)
    by_identity: dict[Identity, int] = field(default_factory=dict)
    _read: int = 0

    def offer(self, task: StoredTask) -> tuple[Verdict, list[int]]:
        """Decide on one state of a task, in the order the log is read.

        `new`: a task not held before (keep it; the listed ids of other lives go); `update`: a
        newer state of a task held (it replaces the one kept); `older`: an older state of a
        task held (ignore it); `stale`: a task of an older life (a newer task holds its id or
        start identity; ignore it).
        """
        self._read += 1
        identity = (task.event.source, task.event.id)
        state = (task.updated_at or "", self._read)
        held = self.by_id.get(task.task_id)
        if held is not None and held.identity == identity:
            if state[0] < held.state[0]:
                return "older", []
            held.state = state
            return "update", []
        rivals = {task.task_id} if held is not None else set()
        if (other := self.by_identity.get(identity)) is not None:
            rivals.add(other)
        if any(self.by_id[r].received_at >= task.received_at for r in rivals):
            return "stale", []
        for rival in rivals:
            del self.by_identity[self.by_id.pop(rival).identity]
        self.by_id[task.task_id] = _Held(identity, task.received_at, state)
        self.by_identity[identity] = task.task_id
        return "new", sorted(rivals)

    def holds(self, task_id: int, identity: Identity) -> bool:
        """True while the task kept under `task_id` is the one started by `identity`."""
        held = self.by_id.get(task_id)
        return held is not None and held.identity == identity
