"""Every aiokafka internal this consumer relies on, in one place, each checked once at start.

aiokafka (pinned `>=0.14,<0.15` in pyproject.toml) has no public API for seven things we need:

- **which group membership** (generation, member id) the member holds, to tell whether a batch's
  offsets still belong to the group's current view (`GroupCoordinator.generation/.member_id`),
  and to **join again** when the group no longer seems to honour it (`coordinator_dead`, then
  `request_rejoin`: the coordinator looked up afresh, then a re-join);
- **committing under an explicit membership**: `AIOKafkaConsumer.commit()` waits for a lost
  coordinator, then sends under whatever membership holds after a re-join, and retries likewise,
  so a batch read from an old log could commit into a new one; we send one request built from the
  membership checked just before (`GroupCoordinator._do_commit_offsets`, no await in between);
- **the fetch wait per fetch** (`Fetcher._fetch_max_wait_ms`, read each time a fetch is built);
- **ending a client whose group coordination is stuck**: `AIOKafkaConsumer.stop()` first awaits
  the coordinator's background task (`GroupCoordinator._coordination_task`), which has no bound
  of its own; one stuck in a coordinator lookup holds the stop for ever. `abandon` cancels that
  task and closes what the stop then never reached (heartbeat task, fetcher, client), and
  `coordination_state` names what the lookup may be waiting on, for the log;
- **asking the broker not to create topics**: aiokafka's metadata requests name the topics a
  client uses with `allow_auto_topic_creation` true, so a broker that auto-creates topics (tansu
  always, Kafka with `auto.create.topics.enable`, its default) creates any missing one with its
  defaults: a reply topic deleted or not yet re-created (wrong partitions, retention, cleanup
  policy), or any topic a request names as its `replyto`. `aiokafka.client.MetadataRequest`
  (a module global read per request) is replaced by one that asks for no creation: a missing
  topic stays missing, and the publisher says so (`install_no_topic_auto_creation`). A topic a
  producer looked up stays in its client's metadata requests for good (`AIOKafkaClient._topics`),
  each refresh logging an error for every missing one: `untrack_topics` takes them out again;
- **a request written to a connection that has just closed, under uvloop**: the broker gone,
  uvloop closes the socket's transport a loop turn or two before aiokafka's reader task notices
  and closes the connection; a request written in between gets uvloop's `RuntimeError` ("the
  handler is closed") where asyncio's own transport would fail it as a lost connection, and
  `AIOKafkaConnection.send` turns only OSError into `KafkaConnectionError`. The RuntimeError
  escaped the metadata synchronizer task (`AIOKafkaClient._md_synchronizer`), which ended for
  good; every later `force_metadata_update()` then waited for ever, and with it the group's
  coordinator lookup: the consumer's commits hung after a broker restart (the fault suite,
  docs/guarantees.md). `install_closed_connection_errors` makes such a write fail as a broken
  connection (closed, `KafkaConnectionError`), as aiokafka expects (upstream: aio-libs/aiokafka
  issue 1038, open);
- **reading past a record the client cannot parse**: the fetcher builds `MemoryRecords` and
  `PartitionRecords` from module globals; ours keep each batch's bytes and, only when the fast
  (C) reader fails on a batch, read that batch in Python (`consumer.kafka.record_format`): the
  unreadable record becomes an `UnparseableRecord` in its place, the rest flow as usual.

Each attribute is checked when first needed (`install_tolerant_records()`,
`install_no_topic_auto_creation()` and `install_closed_connection_errors()` before any client
starts, `GroupInternals(consumer)` once it has): a missing one stops the process with a message
naming it and the pinned version, instead of quietly falling back to the behaviour we avoid.
`tests/integration/test_aiokafka_internals.py` holds this module to the real client and broker.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import struct
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import aiokafka
import aiokafka.client as _client
import aiokafka.codec as codecs
import aiokafka.conn as _conn
from aiokafka.consumer import fetcher as _fetcher
from aiokafka.errors import CorruptRecordException, KafkaConnectionError, UnsupportedCodecError
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.record.legacy_records import LegacyRecordBatch
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from consumer.kafka import record_format
from consumer.ports import MembershipLostError, UnparseableRecord

PINNED = "aiokafka 0.14"
NO_GENERATION = -1
"""The generation aiokafka sets when the broker no longer knows the member."""


class InternalsError(RuntimeError):
    """aiokafka lacks an internal this module relies on (another version than the pinned one)."""


def _require(owner: Any, name: str, where: str) -> Any:
    try:
        return getattr(owner, name)
    except AttributeError:
        raise InternalsError(
            f"aiokafka {aiokafka.__version__} has no {where}.{name}: this consumer relies on it"
            f" and is pinned to {PINNED} (see consumer/kafka/aiokafka_internals.py)"
        ) from None


# --- group membership, commits and the fetch wait ---------------------------------------------


Membership = tuple[int, str]
"""(generation, member id)."""


class GroupInternals:
    """The private parts of one *started* AIOKafkaConsumer that the group member uses."""

    def __init__(self, consumer: Any) -> None:
        coordinator = _require(consumer, "_coordinator", "AIOKafkaConsumer")
        if coordinator is None:
            raise InternalsError("AIOKafkaConsumer._coordinator is None: start the consumer first")
        for name in ("generation", "member_id", "ensure_coordinator_known", "_do_commit_offsets",
                     "coordinator_dead", "request_rejoin"):  # fmt: skip
            _require(coordinator, name, "GroupCoordinator")
        subscription = _require(consumer, "_subscription", "AIOKafkaConsumer")
        subscribed = _require(subscription, "subscription", "SubscriptionState")
        if subscribed is None:
            raise InternalsError("the consumer has no subscription: subscribe before starting it")
        _require(subscribed, "assignment", "Subscription")
        fetcher = _require(consumer, "_fetcher", "AIOKafkaConsumer")
        if not isinstance(_require(fetcher, "_fetch_max_wait_ms", "Fetcher"), int):
            raise InternalsError(f"Fetcher._fetch_max_wait_ms is not an int ({PINNED})")
        for name in ("_coordination_task", "_coordinator_lookup_lock", "coordinator_id",
                     "_stop_heartbeat_task"):  # fmt: skip
            _require(coordinator, name, "GroupCoordinator")
        client = _require(consumer, "_client", "AIOKafkaConsumer")
        for name in ("_sync_task", "_md_update_fut", "close"):
            _require(client, name, "AIOKafkaClient")
        self._coordinator = coordinator
        self._subscription = subscription
        self._fetcher = fetcher
        self._client = client

    def membership(self) -> Membership:
        """The member's generation and member id now (generation -1: not a member)."""
        return (self._coordinator.generation, self._coordinator.member_id)

    async def commit(
        self, offsets: Mapping[tuple[str, int], int], is_current: Callable[[], bool]
    ) -> None:
        """One offset commit under the membership of this moment, if `is_current()` still holds
        once the coordinator is known; MembershipLostError if not (or if not a member at all).

        Waits for a lost coordinator first, as aiokafka's own commit would, but then checks the
        membership again instead of sending under whatever holds after a re-join. Errors from
        the broker propagate as aiokafka raises them.
        """
        coordinator = self._coordinator
        await coordinator.ensure_coordinator_known()
        # No await from this check to the request being built (inside _do_commit_offsets).
        if coordinator.generation == NO_GENERATION or not is_current():
            raise MembershipLostError("the batch's group membership is no longer current")
        assignment = self._subscription.subscription.assignment
        request = {
            TopicPartition(topic, partition): OffsetAndMetadata(offset, "")
            for (topic, partition), offset in offsets.items()
        }
        await coordinator._do_commit_offsets(assignment, request)  # private: see above

    def rejoin(self) -> None:
        """Look the coordinator up afresh and join the group again (from aiokafka's background
        coordination task: the revoke callback first, then a new generation)."""
        self._coordinator.coordinator_dead()
        self._coordinator.request_rejoin()

    def coordination_state(self) -> str:
        """What the group coordination waits on now, in one line (for a log)."""
        coordinator, client = self._coordinator, self._client
        sync = client._sync_task  # private: see the module docstring
        if sync is None:
            synchronizer = "not started"
        elif not sync.done():
            pending = client._md_update_fut is not None  # private: see the module docstring
            synchronizer = "a refresh pending" if pending else "idle"
        elif sync.cancelled():
            synchronizer = "cancelled"
        else:
            synchronizer = f"ended: {sync.exception()!r}"
        task = coordinator._coordination_task  # private: see the module docstring
        lookup = coordinator._coordinator_lookup_lock.locked()  # private: as above
        return (
            f"coordinator {coordinator.coordinator_id}, lookup {'running' if lookup else 'idle'},"
            f" coordination task {'running' if not task.done() else 'ended'},"
            f" metadata synchronizer {synchronizer}"
        )

    async def abandon(self, stopping: asyncio.Future[None], wait_s: float) -> None:
        """End a client whose `stop()` (`stopping`, still running) is held by a stuck group
        coordination: cancel the coordination task, which ends that stop too, then close what
        the stop did not reach. Waits up to `wait_s` for each step."""
        coordinator = self._coordinator
        coordinator._coordination_task.cancel()  # private: see the module docstring
        await asyncio.wait({stopping}, timeout=wait_s)
        steps = (
            coordinator._stop_heartbeat_task,  # private: as above
            self._fetcher.close,
            self._client.close,
        )
        for step in steps:
            try:
                async with asyncio.timeout(wait_s):
                    await step()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # this wait itself is cancelled; not a task it awaited
            except Exception:  # noqa: BLE001, S110 - a best effort on a client being dropped
                pass

    def fetch_wait(self) -> int:
        """The wait the next fetch will ask the broker for, in milliseconds."""
        wait: int = self._fetcher._fetch_max_wait_ms  # private: see the module docstring
        return wait

    def set_fetch_wait(self, wait_ms: int) -> None:
        self._fetcher._fetch_max_wait_ms = wait_ms  # private: read per fetch request


# --- tolerant record reading ------------------------------------------------------------------

_FAST_PATH_ERRORS = (UnicodeDecodeError, CorruptRecordException, UnsupportedCodecError)
"""What aiokafka's C reader raises on a record it cannot read (a non-UTF-8 header name is a bare
UnicodeDecodeError there; a CorruptRecordException in its Python reader)."""
_LOG_OVERHEAD = 12  # baseOffset (int64) + batchLength (int32)
_MAGIC_OFFSET = 16
_DECOMPRESS = {1: codecs.gzip_decode, 2: codecs.snappy_decode, 3: codecs.lz4_decode,
               4: codecs.zstd_decode}  # fmt: skip


def _decompress(codec: int, body: bytes) -> bytes:
    decode = _DECOMPRESS.get(codec)
    if decode is None:
        raise UnsupportedCodecError(f"unknown compression codec {codec}")
    return bytes(decode(body))


class _Readable:
    """A record read by `record_format`, shaped as aiokafka's own for PartitionRecords."""

    __slots__ = ("headers", "key", "offset", "timestamp", "timestamp_type", "value")
    checksum = None

    def __init__(self, raw: record_format.RawRecord, headers: list[tuple[str, bytes | None]]):
        self.offset, self.timestamp, self.timestamp_type = (
            raw.offset, raw.timestamp, raw.timestamp_type)  # fmt: skip
        self.key, self.value, self.headers = raw.key, raw.value, headers


class _Unreadable:
    """A record the client cannot hand over as a ConsumerRecord: becomes an UnparseableRecord."""

    __slots__ = ("raw",)

    def __init__(self, raw: record_format.RawRecord) -> None:
        self.raw = raw

    @property
    def offset(self) -> int:
        return self.raw.offset


def _tolerant(raw_batch: bytes) -> Iterator[_Readable | _Unreadable]:
    for found in record_format.read_batch(raw_batch, _decompress):
        if found.problem is not None:
            yield _Unreadable(found)
            continue
        try:
            names = [(name.decode("utf-8"), value) for name, value in found.headers]
        except UnicodeDecodeError:
            yield _Unreadable(found._replace(problem="a header name is not UTF-8"))
            continue
        yield _Readable(found, names)


class _TolerantBatch:
    """aiokafka's (C) batch; reading it falls back to `record_format` if the fast path fails.

    A batch whose checksum fails is not read at all: none of its records can be trusted, so it
    is handed over as one unreadable piece (its bytes dead-lettered) and the partition moves on.
    """

    __slots__ = ("_batch", "_crc_ok", "_raw")

    def __init__(self, batch: Any, raw: memoryview) -> None:
        self._batch, self._raw, self._crc_ok = batch, raw, True

    def __getattr__(self, name: str) -> Any:  # base_offset, next_offset, is_control_batch ...
        return getattr(self._batch, name)

    def __next__(self) -> Any:  # read by aiokafka only on control batches
        return next(self._batch)

    def validate_crc(self) -> bool:
        self._crc_ok = bool(self._batch.validate_crc())
        return True  # a failed check raises in aiokafka and stops the partition: we go on

    def __iter__(self) -> Iterator[Any]:
        if not self._crc_ok:
            raw = bytes(self._raw)
            header = record_format.batch_header(raw)
            return iter([_Unreadable(record_format.whole_batch(raw, header, "checksum mismatch"))])
        try:
            return iter(list(self._batch))  # the fast path: the whole batch in C
        except _FAST_PATH_ERRORS:
            return _tolerant(bytes(self._raw))


class TolerantMemoryRecords:
    """The framing of aiokafka's MemoryRecords (batch after batch), keeping each batch's bytes."""

    def __init__(self, data: bytes | None) -> None:
        self._buffer = memoryview(data or b"")
        self._pos = 0

    def size_in_bytes(self) -> int:
        return len(self._buffer)

    def _next_end(self) -> int | None:
        if len(self._buffer) - self._pos < _LOG_OVERHEAD:
            return None
        (length,) = struct.unpack_from(">i", self._buffer, self._pos + 8)
        end = self._pos + _LOG_OVERHEAD + length
        return end if end <= len(self._buffer) else None  # a partial batch at the end: next fetch

    def has_next(self) -> bool:
        return self._next_end() is not None

    def next_batch(self) -> Any:
        end = self._next_end()
        if end is None:
            return None
        raw = self._buffer[self._pos : end]
        self._pos = end
        if len(raw) <= _MAGIC_OFFSET:
            raise CorruptRecordException("a record batch shorter than its header")
        if raw[_MAGIC_OFFSET] < 2:
            return LegacyRecordBatch(raw, raw[_MAGIC_OFFSET])
        return _TolerantBatch(DefaultRecordBatch(raw), raw)


def _unparseable(tp: Any, record: _Unreadable) -> UnparseableRecord:
    raw = record.raw
    return UnparseableRecord(
        tp.topic, tp.partition, raw.offset, raw.key, raw.value, tuple(raw.headers),
        raw.problem or "unreadable", raw.raw,
    )  # fmt: skip


def _tolerant_partition_records(base: type) -> type:
    """aiokafka's PartitionRecords, handing an unreadable record over as an UnparseableRecord."""

    def _consumer_record(self: Any, tp: Any, record: Any) -> Any:
        if type(record) is _Unreadable:
            return _unparseable(tp, record)
        return base._consumer_record(self, tp, record)  # type: ignore[attr-defined]  # checked

    return type("TolerantPartitionRecords", (base,), {"_consumer_record": _consumer_record})


def install_tolerant_records() -> None:
    """Make every consumer of this process read past unparseable records (before any starts)."""
    if _fetcher.MemoryRecords is TolerantMemoryRecords:
        return  # installed (and checked) already
    _require(_fetcher, "MemoryRecords", "aiokafka.consumer.fetcher")
    base = _require(_fetcher, "PartitionRecords", "aiokafka.consumer.fetcher")
    _require(base, "_consumer_record", "PartitionRecords")
    for name in ("validate_crc", "base_offset", "next_offset", "is_control_batch"):
        _require(DefaultRecordBatch, name, "DefaultRecordBatch")
    _fetcher.PartitionRecords = _tolerant_partition_records(base)
    _fetcher.MemoryRecords = TolerantMemoryRecords


# --- no topic auto-creation -------------------------------------------------------------------


class _MetadataRequestNoAutoCreate(MetadataRequest):  # type: ignore[misc]  # untyped base
    """aiokafka's MetadataRequest, asking the broker not to create the topics it names (Metadata
    v4 and later; a broker that knows no such flag may still create them)."""

    def __init__(
        self, topics: list[str] | None = None, allow_auto_topic_creation: bool | None = None
    ) -> None:
        super().__init__(topics, bool(allow_auto_topic_creation))


def install_no_topic_auto_creation() -> None:
    """Make every aiokafka client of this process ask brokers not to create missing topics."""
    if _client.MetadataRequest is _MetadataRequestNoAutoCreate:
        return  # installed (and checked) already
    base = _require(_client, "MetadataRequest", "aiokafka.client")
    if base is not MetadataRequest or "allow_auto_topic_creation" not in (
        inspect.signature(MetadataRequest).parameters
    ):
        raise InternalsError(
            f"aiokafka {aiokafka.__version__}'s client builds its metadata requests otherwise"
            f" than {PINNED} (see consumer/kafka/aiokafka_internals.py)"
        )
    _client.MetadataRequest = _MetadataRequestNoAutoCreate


def install_closed_connection_errors() -> None:
    """Make a request written to a connection whose transport has already closed fail as a
    broken connection (`KafkaConnectionError`, the connection closed), not with uvloop's
    RuntimeError (see the module docstring)."""
    connection = _require(_conn, "AIOKafkaConnection", "aiokafka.conn")
    if getattr(connection.send, "_closed_transport_guard", False):
        return  # installed (and checked) already
    _require(_conn.CloseReason, "CONNECTION_BROKEN", "aiokafka.conn.CloseReason")
    for name in ("send", "_send_sasl_token", "close"):
        _require(connection, name, "AIOKafkaConnection")
    for name in ("send", "_send_sasl_token"):
        setattr(connection, name, _guard_closed_transport(getattr(connection, name)))


def _guard_closed_transport(write: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(write)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        writer = self._writer  # private: see the module docstring
        try:
            return write(self, *args, **kwargs)
        except RuntimeError as exc:
            if writer is None or not writer.transport.is_closing():
                raise  # not a write on a closed transport
            self.close(reason=_conn.CloseReason.CONNECTION_BROKEN)
            raise KafkaConnectionError(
                f"Connection at {self._host}:{self._port} broken: {exc}"
            ) from exc

    guarded._closed_transport_guard = True  # type: ignore[attr-defined]
    return guarded


def untrack_topics(producer: Any, missing: set[str], used: set[str]) -> None:
    """Stop asking for the metadata of the `missing` topics: aiokafka keeps every topic a
    producer looked up in each later metadata request, and logs an error per missing one each
    time. The topics in `used` stay (a topic known from an earlier refresh is not tracked, and
    an empty set would mean every topic); nothing changes if nothing else would be left."""
    client = _require(producer, "client", "AIOKafkaProducer")
    tracked = _require(client, "_topics", "AIOKafkaClient")
    rest = (tracked | used) - missing
    if tracked & missing and rest:
        client.set_topics(rest)
