"""`ucs-tasks dev` (what `make dev` runs) on a bridge port of its own: a 201's Location resolves."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import httpx

from producer_tools.devstack.embedded import free_port
from tests.reference import REFERENCE_BODY, REFERENCE_SERVICE_ID
from tests.servers import StackSettings

ROOT = Path(__file__).resolve().parents[2]


async def test_with_another_bridge_port_the_location_of_a_201_resolves(
    settings: StackSettings, tmp_path: Path
) -> None:
    kafka_port, bridge_port = free_port(), free_port()
    env = settings.env()
    for name in (
        "UCS_KAFKA_BOOTSTRAP_SERVERS",  # the dev stack starts its own broker
        "UCS_TOPIC_REPLICATION_FACTOR",
        "UCS_TOPIC_MIN_INSYNC_REPLICAS",
        "UCS_BASE_URI",  # the default: the bridge's own address
        "UCS_BRIDGE_REPLY_TOPIC",
    ):
        env.pop(name, None)
    env |= {
        "UCS_DEV_KAFKA_PORT": str(kafka_port),
        "UCS_DEV_DATA_DIR": str(tmp_path),
        "UCS_BRIDGE_PORT": str(bridge_port),
        "UCS_CONSUMER_HEALTH_PORT": "0",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "producer_tools", "dev",
        env=env, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{bridge_port}"
    start = f"{base}/genesys/1/cs/services/{REFERENCE_SERVICE_ID}/tasks/start"
    try:
        async with httpx.AsyncClient(timeout=10) as client, asyncio.timeout(90):
            while True:
                try:
                    if (await client.get(f"{base}/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.returncode is None, "the dev stack stopped"
                await asyncio.sleep(0.2)
            created = await client.post(
                start, content=REFERENCE_BODY, headers={"Content-Type": "application/json"}
            )
            assert created.status_code == 201, created.text
            location = created.headers["location"]
            assert location.startswith(f"{base}/genesys/1/cs/service/{REFERENCE_SERVICE_ID}/tasks/")
            read = await client.get(location)
            assert read.status_code == 200, read.text
            assert read.json()["task_id"] == created.json()["task_id"]
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.wait(), 30)
    assert process.returncode == 0
