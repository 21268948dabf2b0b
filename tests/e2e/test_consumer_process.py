"""The consumer as a real process: a stop signal mid-flow finishes the batch in hand and exits 0.

Graceful means more than a clean exit code: every event answered before the stop is committed,
so the next process neither loses an event nor answers one a second time.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from schemas.replies import TaskCreated
from tests.kafka_client import TaskClient, rows_per_event
from tests.processes import start_consumer, started_consumer
from tests.servers import StackSettings

# Small batches and a large backlog: the stop must land mid-flow however fast the machine is
# (2,000 events in batches of 50 were once all answered before the signal arrived).
EVENTS = 6000
BATCH = 20
STOP_WITHIN_S = 5.0


async def stop_process(process: subprocess.Popen[bytes], sig: signal.Signals) -> tuple[int, float]:
    """Send `sig`; return the exit code and how long the process took to exit."""
    started = time.monotonic()
    process.send_signal(sig)
    try:
        code = await asyncio.to_thread(process.wait, 30)
    except subprocess.TimeoutExpired:
        process.kill()
        await asyncio.to_thread(process.wait)
        pytest.fail(f"the consumer ignored {sig.name} for 30 s")
    return code, time.monotonic() - started


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_mid_flow_stops_the_process_with_0_and_a_restart_answers_the_rest_once(
    settings: StackSettings, tmp_path: Path, sig: signal.Signals
) -> None:
    client = TaskClient(settings)
    await client.start()
    log = tmp_path / "consumer.log"
    ids = [f"graceful-{settings.consumer.consumer_group}-{i}" for i in range(EVENTS)]
    try:
        await asyncio.gather(
            *(client.send(orjson.dumps({"state_id": i}), event_id=e, correlation_id=e)
              for i, e in enumerate(ids))
        )  # fmt: skip
        first = start_consumer(settings, log, batch_max_records=BATCH)
        try:
            await client.wait_for(lambda: len(client.replies) >= EVENTS // 20, timeout=60)
        finally:
            code, took = await stop_process(first, sig)
        assert code == 0, f"exit code {code} after {sig.name}; see {log}"
        assert took < STOP_WITHIN_S, f"{took:.1f}s to stop after {sig.name}"
        answered_by_first = len(client.replies)
        assert answered_by_first < EVENTS, "the signal came too late to test anything"

        second = await started_consumer(settings, log, batch_max_records=BATCH)
        try:
            await client.wait_for(lambda: all(e in client.replies for e in ids), timeout=60)
            await asyncio.sleep(0.5)  # room for a (wrong) second answer to arrive
        finally:
            code, took = await stop_process(second, signal.SIGTERM)
        assert code == 0, f"exit code {code} after SIGTERM; see {log}"
    finally:
        await client.stop()

    answered_twice = [e for e in ids if len(client.replies[e]) != 1]
    assert not answered_twice, f"{len(answered_twice)} events answered twice: {answered_twice[:5]}"
    task_ids = {TaskCreated.model_validate(client.replies[e][0].payload).task_id for e in ids}
    assert len(task_ids) == EVENTS
    assert await rows_per_event(settings.database_url, ids) == dict.fromkeys(ids, 1)


async def test_sigusr1_and_sigusr2_write_the_threads_and_the_tasks_and_the_process_goes_on(
    settings: StackSettings, tmp_path: Path
) -> None:
    log = tmp_path / "consumer.log"
    process = await started_consumer(settings, log)
    try:
        before = len(log.read_text())
        process.send_signal(signal.SIGUSR1)
        process.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 10
        while "asyncio tasks:" not in log.read_text()[before:] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        written = log.read_text()[before:]
        assert "Current thread" in written, written[-2000:]  # faulthandler's thread stacks
        tasks = written[written.index("asyncio tasks:") :]
        # Each task down to what it awaits: the loop's own coroutine, and a future at the end.
        assert "in run_consumer" in tasks, tasks[:3000]
        assert "  awaiting <" in tasks, tasks[:3000]
        assert process.poll() is None, f"the consumer exited with {process.returncode}"
    finally:
        code, _ = await stop_process(process, signal.SIGTERM)
    assert code == 0, f"exit code {code} after SIGTERM; see {log}"


def test_a_health_port_in_use_ends_the_process_with_2_and_one_line_naming_the_setting(
    settings: StackSettings, tmp_path: Path
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        log_path = tmp_path / "consumer.log"
        process = start_consumer(
            settings, log_path, consumer_health_host="127.0.0.1", consumer_health_port=port
        )
        assert process.wait(timeout=60) == 2
    lines = log_path.read_text().splitlines()
    assert lines[-1] == (
        f"ucs-tasks consumer: the health port 127.0.0.1:{port} cannot be served (Address already"
        " in use): set UCS_CONSUMER_HEALTH_PORT (0: any free port) or UCS_CONSUMER_HEALTH_HOST"
    )
