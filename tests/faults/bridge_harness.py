"""Machinery of the bridge's fault tests: a bridge process, a flow of HTTP clients whose every
request carries its own marker, and the checks that each answer leads to the request's own task.

Every request `i` of a flow sends `Idempotency-Key: <prefix>-<i>` (its event id) and a body
`{"state_id": i, "session_id": <key>, "marker": <key>}`: a task read back proves which request
it answers, so a crossed reply cannot go unnoticed.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import orjson

from producer_tools.bridge.messages import BRIDGE_SOURCE
from producer_tools.devstack.embedded import free_port
from tests.processes import ROOT, ChildProcess, settings_env
from tests.servers import StackSettings

SERVICE_ID = 21456878
START = f"/genesys/1/cs/services/{SERVICE_ID}/tasks/start"


def bridge_overrides(settings: StackSettings, **overrides: Any) -> dict[str, Any]:
    """Bridge settings for one test: its own port, reply topic and Location base, no access log."""
    port = free_port()
    values: dict[str, Any] = {
        "bridge_port": port,
        "base_uri": f"http://127.0.0.1:{port}/genesys/1/cs",
        "bridge_reply_topic": f"{settings.topics.requests}.replies.{uuid.uuid4().hex[:8]}",
        "bridge_access_log": False,
    }
    return values | overrides


class BridgeProcess(ChildProcess):
    """One `python -m producer_tools bridge` child: start, ready, alive, RSS, stop, its log.
    (A SIGTERM drains the requests in progress; `stop()` then returns 0.)"""

    name = "bridge"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.bridge.port}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "producer_tools", "bridge"],
                env=settings_env(self.settings),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def wait_ready(self, timeout_s: float = 30.0, path: str = "/readyz") -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as client:
            deadline = time.monotonic() + timeout_s
            while True:
                assert self.alive, f"the bridge exited while starting:\n{self.log_tail()}"
                try:
                    if (await client.get(path)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"bridge not ready in {timeout_s}s:\n{self.log_tail()}")
                await asyncio.sleep(0.1)


# --- the flow ------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One POST of a flow."""

    index: int
    key: str
    sent_at_s: float
    """Since the flow started."""
    latency_s: float
    status: int
    """0: no HTTP answer (a transport error or the client's timeout)."""
    location: str | None = None
    task_id: int | None = None
    error: str | None = None

    @property
    def acknowledged(self) -> bool:
        return self.status in (201, 202)


def request_body(index: int, key: str) -> bytes:
    return orjson.dumps({"state_id": index, "session_id": key, "marker": key})


@dataclass
class Flow:
    """`clients` concurrent callers posting marked start requests until told to stop."""

    client: httpx.AsyncClient
    prefix: str
    rng: random.Random
    clients: int = 30
    think_s: tuple[float, float] = (0.15, 0.35)
    """Pause between a caller's requests (drawn uniformly)."""
    pause_after_503_s: float = 0.1
    """A caller's pause after a 503 (its Retry-After says 1 s; a busy caller retries sooner)."""
    max_requests: int = 3000
    outcomes: list[Outcome] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _next: int = 0
    _started: float = field(default_factory=time.monotonic)
    """The flow's clock starts when the flow is made (`run()` may start a moment later)."""

    def now_s(self) -> float:
        return time.monotonic() - self._started

    async def run(self, duration_s: float) -> list[Outcome]:
        """Run until `duration_s` passed, `stop()` was called or `max_requests` were sent."""
        pauses = [random.Random(self.rng.random()) for _ in range(self.clients)]
        callers = [self._caller(pause, duration_s) for pause in pauses]
        await asyncio.gather(*callers)
        return self.outcomes

    def stop(self) -> None:
        self.stopping.set()

    async def _caller(self, rng: random.Random, duration_s: float) -> None:
        await asyncio.sleep(rng.uniform(0, self.think_s[1]))  # staggered start
        while not self.stopping.is_set() and self.now_s() < duration_s:
            if self._next >= self.max_requests:
                return
            index, self._next = self._next, self._next + 1
            outcome = await self._post(index)
            self.outcomes.append(outcome)
            pause = self.pause_after_503_s if outcome.status == 503 else rng.uniform(*self.think_s)
            await asyncio.sleep(pause)

    async def _post(self, index: int) -> Outcome:
        key = f"{self.prefix}-{index}"
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        sent = self.now_s()
        began = time.monotonic()
        try:
            response = await self.client.post(
                START, content=request_body(index, key), headers=headers
            )
        except httpx.HTTPError as exc:
            latency = time.monotonic() - began
            return Outcome(index, key, sent, latency, 0, error=f"{type(exc).__name__}: {exc}")
        latency = time.monotonic() - began
        outcome = Outcome(index, key, sent, latency, response.status_code)
        outcome.location = response.headers.get("location")
        if response.status_code == 201:
            outcome.task_id = response.json()["task_id"]
        elif response.status_code >= 400:
            body = response.json()
            assert set(body) == {"message", "exception", "errors"}, response.text
            outcome.error = body["message"]
        return outcome


def classes(outcomes: Iterable[Outcome]) -> Counter[int]:
    return Counter(o.status for o in outcomes)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


# --- the checks ----------------------------------------------------------------------------


@dataclass
class Resolution:
    """Where the acknowledged requests of a flow ended up."""

    task_ids: dict[str, int] = field(default_factory=dict)
    """Request key -> its task (read back, marker checked)."""
    unresolved: list[str] = field(default_factory=list)
    """202s whose status stayed pending."""
    crossed: list[str] = field(default_factory=list)
    """Answers leading to a task that carries another request's marker."""


def _path(url: str) -> str:
    parsed = httpx.URL(url)
    return parsed.raw_path.decode()


async def _read_task(client: httpx.AsyncClient, location: str) -> dict[str, Any]:
    response = await client.get(_path(location), params={"extensions": "marker"})
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


def _carries(task: dict[str, Any], outcome: Outcome) -> bool:
    return (
        task.get("state_id") == outcome.index
        and task["started"].get("session_id") == outcome.key
        and task.get("marker") == outcome.key
    )


async def resolve(
    client: httpx.AsyncClient,
    outcomes: Iterable[Outcome],
    timeout_s: float,
    concurrency: int = 20,
) -> Resolution:
    """Follow every 201's Location and every 202's status Location (until 303 or `timeout_s`),
    read the task and check it carries the request's own marker."""
    result = Resolution()
    limit = asyncio.Semaphore(concurrency)
    deadline = time.monotonic() + timeout_s

    async def one(outcome: Outcome) -> None:
        assert outcome.location is not None, outcome
        async with limit:
            location = outcome.location
            if outcome.status == 202:
                while True:
                    status = await client.get(_path(location))
                    if status.status_code == 303:
                        location = status.headers["location"]
                        break
                    assert status.status_code in (202, 503), status.text  # 503: database away
                    if time.monotonic() > deadline:
                        result.unresolved.append(outcome.key)
                        return
                    await asyncio.sleep(0.2)
            task = await _read_task(client, location)
        if not _carries(task, outcome):
            result.crossed.append(outcome.key)
        if outcome.task_id is not None and task["task_id"] != outcome.task_id:
            result.crossed.append(outcome.key)
        result.task_ids[outcome.key] = task["task_id"]

    await asyncio.gather(*(one(o) for o in outcomes if o.acknowledged))
    return result


async def rows_by_key(database_url: str, keys: Sequence[str]) -> dict[str, list[int]]:
    """The task ids stored for these request keys (event ids of the bridge's source)."""
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""), timeout=10)
    try:
        found = await conn.fetch(
            "SELECT event_id, array_agg(task_id) AS ids FROM tasks"
            " WHERE event_source = $1 AND event_id = ANY($2::text[]) GROUP BY event_id",
            BRIDGE_SOURCE,
            list(keys),
        )
    finally:
        await conn.close()
    return {row["event_id"]: list(row["ids"]) for row in found}


def one_row_each(
    outcomes: Iterable[Outcome], rows: dict[str, list[int]], resolution: Resolution
) -> list[str]:
    """Acknowledged requests without exactly one row, or whose row is not the task answered."""
    wrong = []
    for outcome in outcomes:
        if not outcome.acknowledged:
            continue
        stored = rows.get(outcome.key, [])
        answered = resolution.task_ids.get(outcome.key)
        if len(stored) != 1 or (answered is not None and stored != [answered]):
            wrong.append(outcome.key)
    return wrong


async def watch_alive(
    processes: dict[str, Callable[[], bool]], stopping: asyncio.Event, deaths: list[str]
) -> None:
    """Record any process found dead while the flow runs."""
    while not stopping.is_set():
        deaths.extend(name for name, alive in processes.items() if not alive())
        if deaths:
            return
        await asyncio.sleep(0.1)


async def warm_up(client: httpx.AsyncClient, timeout_s: float = 60.0) -> None:
    """Until a start request gets 201 (the consumer has joined its group)."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = await client.post(
            START, content=b"{}", headers={"Content-Type": "application/json"}
        )
        if response.status_code == 201:
            return
        assert response.status_code in (202, 503), response.text
        if time.monotonic() > deadline:
            raise AssertionError(f"no 201 within {timeout_s}s: last {response.status_code}")
        await asyncio.sleep(0.2)


def summary(outcomes: Sequence[Outcome]) -> str:
    """`requests=N 201=a 202=b 503=c 500=0 ...` with every class seen."""
    seen = classes(outcomes)
    shown = {201: 0, 202: 0, 503: 0, 500: 0} | dict(seen)
    parts = [f"{code if code else 'no-answer'}={count}" for code, count in sorted(shown.items())]
    return f"requests={len(outcomes)} " + " ".join(parts)
