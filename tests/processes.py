"""Run the system's real processes (consumer, bridge) as subprocesses, configured by env."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from schemas.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def settings_env(settings: Settings, **overrides: object) -> dict[str, str]:
    """The environment that makes a child process read exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UCS_")}
    values = settings.model_dump() | overrides
    for name, value in values.items():
        if value is None:
            continue
        secret = getattr(value, "get_secret_value", None)
        env[f"UCS_{name.upper()}"] = str(secret() if secret else value)
    return env


def start_consumer(
    settings: Settings, log_path: Path, **overrides: object
) -> subprocess.Popen[bytes]:
    """`python -m consumer` with these settings, its output appended to log_path."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "consumer"],
            env=settings_env(settings, **overrides),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
