"""What the service layer and the consume loop need from the outside world, as Protocols
(adapters implement them, tests/fakes.py fakes them), and the plain data they pass."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import NamedTuple, Protocol, Self

from consumer.domain import (
    ChangeCommand,
    ChangeOutcome,
    Command,
    EventIdentity,
    Position,
    Rejection,
    StartCommand,
    Task,
)


class TaskRepository(Protocol):
    """Persistence of tasks and rejections, batched."""

    async def add_or_get(
        self, commands: Sequence[StartCommand]
    ) -> dict[EventIdentity, tuple[Task, bool]]:
        """Insert tasks for new identities (ids in command order); return every identity's task.

        The bool is True when this call created the task. Identities already stored take no id.
        Raises IdSpaceExhaustedError, UnstorableEventError or StorageUnavailableError.
        """
        ...

    async def get_by_identity(
        self, identities: Sequence[EventIdentity]
    ) -> dict[EventIdentity, Task]:
        """The stored tasks among these identities."""
        ...

    async def record_rejections(self, rejections: Sequence[Rejection]) -> None:
        """Record refused events (one row per identity; recording again is a no-op)."""
        ...

    async def apply_changes(self, commands: Sequence[ChangeCommand]) -> list[ChangeOutcome]:
        """Apply ends and extension updates in order; one outcome per command, in order.

        A recorded identity answers what it recorded and changes nothing. Raises
        UnstorableEventError or StorageUnavailableError.
        """
        ...


class UnitOfWork(Protocol):
    """One database transaction; rolls back on exit unless `commit()` was called."""

    @property
    def tasks(self) -> TaskRepository:
        """The repository bound to this transaction."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]


# --- the consume loop's ports: the group member it reads from, the publisher it answers with ---

Partition = tuple[str, int]
"""(topic, partition number); aiokafka's TopicPartition is one."""

Header = tuple[str, bytes | None]


class ConsumedRecord(Protocol):
    """One record as the group member hands it over (aiokafka's ConsumerRecord is one)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[Header]: ...


@dataclass(frozen=True, slots=True)
class UnparseableRecord:
    """A record the Kafka client could not parse, in its place in its partition.

    `raw_headers` keeps each header name as the bytes it was written with (a name that is not
    UTF-8 is why most such records cannot be parsed); `raw` holds the bytes that could not be
    read at all (a corrupt record, or a whole batch whose checksum failed), else it is empty.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    raw_headers: tuple[tuple[bytes, bytes | None], ...]
    problem: str
    raw: bytes = b""
    headers: tuple[Header, ...] = ()


class Polled(NamedTuple):
    """One poll: records by partition, in offset order, and the membership they came under."""

    records: Mapping[Partition, Sequence[ConsumedRecord | UnparseableRecord]]
    membership: Hashable
    """Opaque; offsets of these records are committed under this membership or not at all."""


class MembershipLostError(Exception):
    """The group moved on (a rebalance, or the broker forgot this member): a commit under the
    membership a batch came under is refused; its records are redelivered."""


class MemberStuckError(Exception):
    """The member's group client makes no progress: commits failed for a whole session timeout,
    the member was asked to join the group again, and by the next batch's commit nothing had
    changed. Only a new client helps; the composition root builds one (the records since the
    last commit are answered again; replays are idempotent)."""


RevokeHook = Callable[[], Awaitable[None]]


class GroupMember(Protocol):
    """A consumer-group member: what the loop needs of it, and nothing of how it is done."""

    def on_revoke(self, hook: RevokeHook) -> None:
        """Have `hook` awaited before partitions are taken away (under the old membership)."""
        ...

    async def poll(self, timeout_ms: int, max_records: int) -> Polled:
        """The records fetched so far (waiting up to `timeout_ms` for some)."""
        ...

    def is_current(self, membership: Hashable) -> bool:
        """Whether `membership` is still this member's (no rebalance began since)."""
        ...

    async def commit(self, offsets: Mapping[Partition, int], membership: Hashable) -> None:
        """Commit next offsets under `membership`. Raises MembershipLostError if it is gone,
        a retriable ServiceError when the broker cannot be reached."""
        ...

    def rejoin(self) -> None:
        """Join the group again (a rebalance begins: the revoke hook, then a new membership);
        for a member whose membership the group no longer seems to honour."""
        ...

    def set_fetch_wait(self, wait_ms: int) -> None:
        """How long the broker may hold a fetch that finds no record (from the next fetch)."""
        ...

    def assignment(self) -> set[Partition]: ...

    def pause(self, *partitions: Partition) -> None: ...

    def resume(self, *partitions: Partition) -> None: ...

    def paused(self) -> set[Partition]: ...


class Inbound(NamedTuple):
    """One consumed record and the command it asks for (the codec translates one into the other);
    `reply_to` and `correlation_id` as they may be used in answers."""

    position: Position
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...]
    command: Command
    reply_to: str | None = None
    correlation_id: str | None = None
    echo: tuple[tuple[str, bytes], ...] = ()
    """The request's headers a reply carries back as they came (another client's correlation
    header, the W3C trace context)."""


class OutRecord(NamedTuple):
    """One record to publish, and what it stands for (so a refused one can be replaced)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Sequence[Header]
    role: int
    """`REPLY`, `COPY` (to a requester-named `replyto`), `DEAD_LETTER` or `LAST_RESORT`."""
    origin: Inbound | None = None
    """The consumed record it answers, for a dead letter in its place."""


REPLY, COPY, DEAD_LETTER, LAST_RESORT = range(4)


class Undelivered(NamedTuple):
    """A record the broker refused for good (not an outage), and why."""

    record: OutRecord
    problem: str


class ReplyPublisher(Protocol):
    """Publishes replies and dead letters and waits for the broker's acknowledgements."""

    async def publish(self, records: Sequence[OutRecord]) -> list[Undelivered]:
        """Send every record (per-partition order kept); the ones refused for good come back.
        Raises a retriable ServiceError when the broker cannot take them now."""
        ...
