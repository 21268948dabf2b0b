"""Offset commits: each settled batch is committed under the group membership it was fetched
under, retried while that membership holds, and dropped once it is gone, or once it has failed
for a whole session timeout (the member then joins the group again).

Why under its own membership: at each rebalance aiokafka resets every position to the group's
committed offset, so a batch whose membership ended is fetched again (by this member or the
partition's new owner) and replays are idempotent; committing it under a later membership could
instead store offsets of a log the broker no longer has (a restarted memory-only broker numbers
its new log from 0 again) and skip the new log's first records.

Why retried: a commit lost to a transient failure while the membership holds is not redelivered
until the next rebalance or restart; work settled in between would be answered again then, and a
graceful stop would leave it behind. A stop still commits what was settled, for a few seconds.

Why not retried forever: a membership can hold in the client while the group it belongs to is
gone. A broker restarted without its group state (found with the memory-only dev broker) left
aiokafka's member believing in its generation while every commit timed out, and the loop, which
waits for a batch's commit before it settles the next, answered nothing more. A commit failing
for as long as the group's session timeout (after which aiokafka itself gives a silent
coordinator up) is therefore dropped like a lost membership's, and the member asked to join the
group again: positions go back to the committed offsets and the records since are answered again
(replays are idempotent), as after a restart of the consumer, without one.

Why a rejoin can be followed by a new client: the rejoin goes through the client's own group
coordination, and once that coordination stops nothing in the client brings it back (a broker
restart once ended aiokafka's metadata task, and its coordinator lookup then waited for ever:
fixed by `install_closed_connection_errors`; this is the net for any other such cause). When
the next batch's commit is stuck as long under the very membership the rejoin was asked under,
the rejoin changed nothing: MemberStuckError tells the composition root to replace the client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Hashable, Mapping

from consumer.kafka.backoff import backoff_s
from consumer.ports import GroupMember, MembershipLostError, MemberStuckError, Partition
from consumer.telemetry import Telemetry
from schemas.errors import ServiceError
from schemas.settings import RetrySettings

log = logging.getLogger(__name__)

ATTEMPT_S = 5.0
"""The longest one commit attempt may take (a lost coordinator is looked for meanwhile)."""
STOPPING_S = 5.0
"""How long a stopping consumer keeps trying to commit what it settled."""


class Committer:
    """Commits settled batches for one group member."""

    def __init__(
        self,
        member: GroupMember,
        retry: RetrySettings,
        telemetry: Telemetry | None = None,
        *,
        stuck_s: float,
    ) -> None:
        self._member = member
        self._retry = retry
        self._telemetry = telemetry or Telemetry()
        self._stuck_s = stuck_s
        self._rejoined_under: Hashable | None = None
        """The membership a rejoin was last asked under (None once a commit went through)."""

    async def commit(
        self, offsets: Mapping[Partition, int], membership: Hashable, stopping: asyncio.Event
    ) -> bool:
        """Commit `offsets` under `membership`; False if it was dropped (redelivered later)."""
        attempt = 0
        give_up_at: float | None = None
        stuck_at = time.monotonic() + self._stuck_s
        while True:
            if not self._member.is_current(membership):
                log.warning("batch settled after its group membership ended: not committed"
                            " (its records are fetched again; replays are idempotent)")  # fmt: skip
                self._telemetry.committed("dropped")
                return False
            try:
                async with asyncio.timeout(ATTEMPT_S):
                    await self._member.commit(offsets, membership)
            except MembershipLostError as exc:
                log.warning("offset commit refused, the group moved on (records are fetched"
                            " again; replays are idempotent): %s", exc)  # fmt: skip
                self._telemetry.committed("dropped")
                return False
            except (ServiceError, TimeoutError) as exc:
                if isinstance(exc, ServiceError) and not exc.retriable:
                    raise
                if stopping.is_set():
                    give_up_at = give_up_at or time.monotonic() + STOPPING_S
                    if time.monotonic() >= give_up_at:
                        log.warning("stopping: offset commit still failing, given up"
                                    " (redelivered at the next start): %r", exc)  # fmt: skip
                        self._telemetry.committed("failed")
                        return False
                if time.monotonic() >= stuck_at:
                    self._telemetry.committed("failed")
                    if membership == self._rejoined_under:
                        raise MemberStuckError(
                            f"offset commits failing for {self._stuck_s:.1f}s again under the"
                            f" membership a rejoin was asked under: {exc!r}"
                        ) from exc
                    log.warning("offset commit failing for %.1fs under a membership the client"
                                " still holds: dropped, and the group joined again (records since"
                                " the last commit are answered again; replays are idempotent): %r",
                                self._stuck_s, exc)  # fmt: skip
                    self._rejoined_under = membership
                    self._member.rejoin()
                    return False
                delay = backoff_s(self._retry, attempt)
                attempt += 1
                log.warning("offset commit failed (attempt %d), retrying in %.2fs under the same"
                            " membership: %r", attempt, delay, exc)  # fmt: skip
                await asyncio.sleep(delay)
                continue
            self._rejoined_under = None
            self._telemetry.committed("committed", {(t, p): o for (t, p), o in offsets.items()})
            return True
