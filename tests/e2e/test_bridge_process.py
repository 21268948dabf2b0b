"""The bridge as a real process (`python -m producer_tools bridge`), with a real consumer: the
reference round trip as real clients send it, and a stop signal that drains."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx

from producer_tools.devstack.embedded import free_port
from tests.integration.test_bridge import published_request
from tests.processes import ROOT, settings_env, start_consumer
from tests.reference import REFERENCE_ATTACHED, REFERENCE_BODY, REFERENCE_SERVICE_ID
from tests.servers import StackSettings


def start_bridge(settings: StackSettings, log_path: Path) -> subprocess.Popen[bytes]:
    """`python -m producer_tools bridge` (the `ucs-tasks bridge` command) with these settings."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "producer_tools", "bridge"],
            env=settings_env(settings),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def test_the_bridge_command_serves_the_reference_round_trip_and_stops_cleanly(
    settings: StackSettings, tmp_path: Path
) -> None:
    port = free_port()
    bridge_settings = settings.with_(
        **{
            "bridge_port": port,
            "bridge_reply_topic": f"{settings.topics.requests}.replies.{uuid.uuid4().hex[:8]}",
            "base_uri": f"http://127.0.0.1:{port}/genesys/1/cs",
        }
    )
    log = tmp_path / "processes.log"
    consumer = start_consumer(bridge_settings, log)
    bridge = start_bridge(bridge_settings, log)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            async with asyncio.timeout(30):
                while True:
                    try:
                        if (await client.get("/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert bridge.poll() is None, log.read_text()
                    await asyncio.sleep(0.1)
            created = await client.post(
                f"/genesys/1/cs/services/{REFERENCE_SERVICE_ID}/tasks/start",
                content=REFERENCE_BODY,
                headers={"Content-Type": "application/json;charset=UTF-8"},  # as real clients
            )
            assert created.status_code == 201, created.text
            read = await client.get(created.headers["location"], params={"extensions": "*"})
            assert read.status_code == 200
            task = read.json()
            assert task["task_id"] == created.json()["task_id"]
            assert {key: task[key] for key in REFERENCE_ATTACHED} == REFERENCE_ATTACHED
            legacy = f"/services/{REFERENCE_SERVICE_ID}/tasks/{task['task_id']}"  # 8.0/8.1 form
            assert (await client.get(legacy, params={"extensions": "*"})).json() == task
    finally:
        for process in (bridge, consumer):
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=30) for process in (bridge, consumer)]
    assert codes == [0, 0], log.read_text()
    assert "Application shutdown complete" in log.read_text()


async def test_sigterm_drains_a_request_in_progress_and_the_bridge_exits_0(
    settings: StackSettings, tmp_path: Path
) -> None:
    port = free_port()
    bridge_settings = settings.with_(
        bridge_port=port,
        bridge_reply_topic=f"{settings.topics.requests}.replies.{uuid.uuid4().hex[:8]}",
        base_uri=f"http://127.0.0.1:{port}/genesys/1/cs",
        bridge_reply_timeout_ms=3000,  # no consumer runs: the request waits this long
    )
    log = tmp_path / "bridge.log"
    bridge = start_bridge(bridge_settings, log)
    key = f"drained-{uuid.uuid4().hex}"
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            async with asyncio.timeout(30):
                while True:
                    try:
                        if (await client.get("/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert bridge.poll() is None, log.read_text()
                    await asyncio.sleep(0.1)
            in_progress = asyncio.create_task(
                client.post(
                    f"/genesys/1/cs/services/{REFERENCE_SERVICE_ID}/tasks/start",
                    content=b'{"state_id": 1}',
                    headers={"Content-Type": "application/json", "Idempotency-Key": key},
                )
            )
            await published_request(bridge_settings, key)  # it waits for its reply now
            assert not in_progress.done()
            bridge.send_signal(signal.SIGTERM)
            answer = await in_progress
        # Answered as without the signal (202: no reply in time), not cut off or failed.
        assert answer.status_code == 202, answer.text
        assert answer.json()["event_id"] == key
        assert answer.headers["connection"] == "close"
        code = await asyncio.to_thread(bridge.wait, 30)
    finally:
        if bridge.poll() is None:
            bridge.kill()
            bridge.wait()
    assert code == 0, log.read_text()
    text = log.read_text()
    assert text.index("Shutting down") < text.index("Application shutdown complete")
    assert "Cancel" not in text  # nothing was cut off by the graceful-shutdown timeout
