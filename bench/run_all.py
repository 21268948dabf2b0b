"""Run every benchmark in bench/ (except the soak) one after the other: what `make bench` does.

    .venv/bin/python bench/run_all.py [--only consumer peers] [--skip replay] [--timeout-s 900]

Each `bench/*.py` runs with its own default sizes, except soak.py (`make soak`),
instructions.py (valgrind, minutes: run by hand), this file and modules starting with `_`; new
benchmarks are picked up by being there. Each one's output is shown as it runs; a summary
follows with each script's status, duration and its `ratio ...`
lines (or its last line when it prints none). The exit code is 1 if any script failed or ran
out of time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOT_HERE = {"soak.py", "instructions.py", Path(__file__).name}


def scripts(only: list[str], skip: list[str]) -> list[Path]:
    found = [p for p in sorted(HERE.glob("*.py")) if p.name not in NOT_HERE]
    found = [p for p in found if not p.name.startswith("_")]
    if only:
        found = [p for p in found if p.stem in only]
    return [p for p in found if p.stem not in skip]


def run(script: Path, timeout_s: float) -> tuple[str, float, list[str]]:
    """Run one benchmark, echoing its output; (status, seconds, its ratio lines)."""
    print(f"\n=== {script.name} ===", flush=True)
    began = time.perf_counter()
    ratios: list[str] = []
    last = ""
    with subprocess.Popen(
        [sys.executable, str(script)], cwd=HERE.parent, stdout=subprocess.PIPE, text=True
    ) as process:
        watchdog = threading.Timer(timeout_s, process.kill)  # a hung script must not hang us
        watchdog.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                print(line, end="", flush=True)
                if line.startswith("ratio"):
                    ratios.append(line.strip())
                last = line.strip() or last
            code = process.wait()
        finally:
            watchdog.cancel()
    seconds = time.perf_counter() - began
    ratios = ratios or [last]  # a benchmark without a ratio line: its closing line
    if seconds >= timeout_s:
        return f"killed after {timeout_s:.0f} s", seconds, ratios
    return ("ok" if code == 0 else f"failed (exit {code})"), seconds, ratios


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", default=[], help="script names to run (no .py)")
    parser.add_argument("--skip", nargs="*", default=[], help="script names to leave out")
    parser.add_argument("--timeout-s", type=float, default=900, help="per script (900 s)")
    args = parser.parse_args()
    results = [(script, *run(script, args.timeout_s)) for script in scripts(args.only, args.skip)]
    print("\n=== summary ===")
    width = max((len(script.name) for script, _, _, _ in results), default=0)
    for script, status, seconds, ratios in results:
        print(f"{script.name:<{width}} {status:<24} {seconds:>6.0f} s   {'; '.join(ratios)}")
    return 0 if all(status == "ok" for _, status, _, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
