"""Logging set-up: text or JSON lines, and a rate limit for per-record reports.

JSON lines carry `time`, `level`, `logger`, `message`, and whatever structured fields the call
site passes in `extra` (the event identity, partition, offset, task id...): `log.info("...",
extra=fields(event_id=..., partition=...))`. Text lines show the same fields as `key=value`.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any, Final, TextIO

import orjson

from observability.settings import LogSettings

FIELDS_ATTRIBUTE: Final = "ucs_fields"
"""The LogRecord attribute holding a line's structured fields."""


def fields(**values: Any) -> dict[str, Any]:
    """Structured fields for a log call's `extra` (None values are left out)."""
    return {FIELDS_ATTRIBUTE: {k: v for k, v in values.items() if v is not None}}


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    found: dict[str, Any] = getattr(record, FIELDS_ATTRIBUTE, None) or {}
    return found


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ms), level, logger, message, fields, error."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self._process = process

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "process": self._process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_record_fields(record))
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """The classic line, then the structured fields as `key=value`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = _record_fields(record)
        if not extra:
            return text
        shown = " ".join(f"{k}={v}" for k, v in extra.items())
        head, sep, rest = text.partition("\n")  # keep a traceback below the first line
        return f"{head} [{shown}]{sep}{rest}"


def configure(settings: LogSettings, process: str, stream: TextIO = sys.stderr) -> None:
    """Configure the root logger of this process (once, in its entry point)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(process) if settings.format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.level)
    # Client libraries report every reconnection attempt; our own code says what matters.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))


class RateLimitedLog:
    """Per-record reports (a rejection, a dead letter) at most `per_minute` lines a minute per
    kind; the lines held back are counted and reported in one line when the minute ends."""

    def __init__(self, logger: logging.Logger, per_minute: int) -> None:
        self._logger = logger
        self._per_minute = per_minute
        self._lock = threading.Lock()
        self._window: dict[str, tuple[float, int, int]] = {}  # kind -> (start, logged, held)

    def log(self, level: int, kind: str, message: str, *args: Any, **extra: Any) -> bool:
        """Log unless `kind` used up its minute; True when the line was written."""
        now = time.monotonic()
        with self._lock:
            start, logged, held = self._window.get(kind, (now, 0, 0))
            if now - start >= 60.0:
                if held:
                    self._logger.warning(
                        "%d more %s reports in the last minute were not logged",
                        held,
                        kind,
                        extra=fields(kind=kind, suppressed=held),
                    )
                start, logged, held = now, 0, 0
            if logged >= self._per_minute:
                self._window[kind] = (start, logged, held + 1)
                return False
            self._window[kind] = (start, logged + 1, held)
        self._logger.log(level, message, *args, extra=fields(kind=kind, **extra))
        return True
