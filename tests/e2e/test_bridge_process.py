"""The bridge as a real process (`python -m producer_tools bridge`) with a real consumer."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx

from producer_tools.devstack.embedded import free_port
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
                headers={"Content-Type": "application/json"},
            )
            assert created.status_code == 201, created.text
            read = await client.get(created.headers["location"], params={"extensions": "*"})
            assert read.status_code == 200
            task = read.json()
            assert task["task_id"] == created.json()["task_id"]
            assert {key: task[key] for key in REFERENCE_ATTACHED} == REFERENCE_ATTACHED
    finally:
        for process in (bridge, consumer):
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=30) for process in (bridge, consumer)]
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught (Unix convention).
    assert codes in ([0, 0], [-signal.SIGTERM, 0]), log.read_text()
    assert "Application shutdown complete" in log.read_text()
