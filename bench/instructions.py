"""Benchmark: `ucs-tasks produce` against raw aiokafka `send()` in instructions, not seconds.

    .venv/bin/python bench/instructions.py [--events 2000 6000]

On a shared virtual machine this process's CPU time per event moves by a third between runs a
minute apart (`replay.py` gave produce / raw `send()` 53% and 83% for the same code, minutes
apart); the count of instructions a process executes does not move with the neighbours. This
runs each side in a fresh Python under valgrind's callgrind (which counts every instruction the
process executes; ~50 times slower, so a few thousand events), twice, with the smaller and the
larger count of the same events: the difference over the difference of events is the
instructions per event, start-up and imports cancelled out. Hash randomisation is off in those
processes (PYTHONHASHSEED=0). The figure still moves by a few percent with timing, which decides
how many batches aiokafka's sender forms and how many turns the loop takes while acks come back
(the same code gave 155k and 161k per produced event, run beside other work): compare figures
taken the same way, or `LinePreparer.prepare` alone, whose count has no clock in it.

The broker (tansu, embedded) runs outside valgrind. Both sides use `replay.py`'s events and
runners: `produce` reads, validates, derives identities, batches and waits for every ack;
raw `send()` publishes the records `produce` would send, encoded beforehand (outside the
difference: the same records are encoded whatever the count).

Instructions are not time (a cache miss costs more than an add), but on the same CPU the
two sides' ratio by instructions moves with the code alone; needs `valgrind` (Debian
package `valgrind`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import replay  # bench/replay.py: its events and runners

from producer_tools.devstack.embedded import EmbeddedBroker

SIDES = {"produce": replay.run_produce, "raw send()": replay.run_raw_send}
_COLLECTED = re.compile(rb"Collected\s*:\s*(\d+)")


async def _one_side(side: str, events: int, most: int, bootstrap: str) -> None:
    """Inside valgrind: send `events` of `most` prepared events through `side`."""
    with tempfile.TemporaryDirectory(prefix="ucs-bench-") as tmp:
        path = Path(tmp) / "events.jsonl"
        replay.write_file(path, most)
        settings = await replay.fresh_settings(bootstrap)
        records = replay.encoded_records(path, settings)[:events]  # the same work for any count
        path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:events]))
        gc.freeze()
        sent = await SIDES[side](settings, path, records)
        assert sent == events, f"{side}: {sent} of {events} acknowledged"


def _instructions(side: str, events: int, most: int, bootstrap: str) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--inside",
        side,
        str(events),
        str(most),
        bootstrap,
    ]
    done = subprocess.run(  # our own script, under valgrind
        command,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        capture_output=True,
        check=False,
    )
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{side} under valgrind failed:\n{done.stderr.decode()[-2000:]}")
    return int(found.group(1))


async def main(fewer: int, more: int) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian package `valgrind`)")
    with tempfile.TemporaryDirectory(prefix="ucs-bench-") as tmp:
        async with EmbeddedBroker(log_path=Path(tmp) / "broker.log") as broker:
            per_event = {}
            for side in SIDES:
                counts = [
                    await asyncio.to_thread(_instructions, side, n, more, broker.bootstrap_servers)
                    for n in (fewer, more)
                ]
                per_event[side] = (counts[1] - counts[0]) / (more - fewer)
                print(f"{side:10s} {per_event[side]:>12,.0f} instructions per event", flush=True)
    ratio = per_event["raw send()"] / per_event["produce"]
    print(f"ratio by instructions per event: produce / raw send() = {ratio:.0%}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--inside":
        side, events, most, bootstrap = sys.argv[2], *map(int, sys.argv[3:5]), sys.argv[5]
        asyncio.run(_one_side(side, events, most, bootstrap))
    else:
        parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
        parser.add_argument("--events", type=int, nargs=2, default=[2000, 6000])
        arguments = parser.parse_args()
        asyncio.run(main(*sorted(arguments.events)))
