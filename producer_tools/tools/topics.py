"""`ucs-tasks topics create|check`: the service topics with the settings the guarantees need.

`create` makes the topics that do not exist (`UCS_TOPIC_PARTITIONS`, `UCS_TOPIC_REPLICATION_FACTOR`,
and the configs of `consumer.kafka.topic_rules`: the created-events log kept forever,
`min.insync.replicas`, record-size limits from `UCS_MAX_BODY_BYTES`), then checks them all;
`check` only checks. Neither ever alters an existing topic: each problem is printed with the
command an operator would run.

Exit codes: 0 every topic keeps what the guarantees need (warnings may be listed), 1 a topic is
missing or breaks a promise, 2 unusable settings, 3 the broker cannot be reached or refused to
create a topic, 130 interrupted.
"""

from __future__ import annotations

import asyncio
from typing import Final, Literal, TextIO

import orjson
from aiokafka.errors import KafkaError

from consumer.admin import (
    Finding,
    Severity,
    TopicReport,
    TopicSetupError,
    check_service_topics,
    create_service_topics,
)
from producer_tools.tools._progress import EXIT_BROKER, EXIT_OK, run_until_interrupted
from producer_tools.tools.settings import ToolsConfig

EXIT_TOPICS: Final = 1
"""A topic is missing or breaks a promise of docs/guarantees.md."""
REQUEST_TIMEOUT_MS: Final = 15_000

Action = Literal["create", "check"]


async def topics(settings: ToolsConfig, action: Action) -> TopicReport:
    """Create the missing topics then check them all (`create`), or only check them."""
    if action == "create":
        return await create_service_topics(
            settings.kafka,
            settings.topics,
            settings.contract,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
        )
    return await check_service_topics(
        settings.kafka, settings.topics, settings.contract, REQUEST_TIMEOUT_MS
    )


def exit_code(report: TopicReport) -> int:
    """0 when no finding is an error, else 1."""
    return EXIT_TOPICS if report.errors else EXIT_OK


def _status(report: TopicReport, name: str, found: list[Finding]) -> str:
    if any(f.severity is Severity.ERROR for f in found):
        return "error"
    if found:
        return "warning"
    return "created" if name in report.created else "ok"


def as_json(report: TopicReport, settings: ToolsConfig, action: Action) -> dict[str, object]:
    """The machine-readable report."""
    listed = []
    for name in report.topics:
        found = [f for f in report.findings if f.topic == name]
        listed.append(
            {
                "name": name,
                "status": _status(report, name, found),
                "findings": [
                    {"severity": str(f.severity), "subject": f.subject, "problem": f.problem}
                    for f in found
                ],
            }
        )
    return {
        "tool": f"topics {action}",
        "bootstrap_servers": settings.kafka.bootstrap_servers,
        "topics": listed,
        "created": list(report.created),
        "fixes": list(report.fixes),
        "error": None,
        "exit_code": exit_code(report),
    }


def print_report(report: TopicReport, settings: ToolsConfig, out: TextIO) -> None:
    """The report for a person: each topic, its findings, then the commands that fix them."""
    for name in report.topics:
        found = [f for f in report.findings if f.topic == name]
        out.write(f"{name}: {_status(report, name, found)}\n")
        for finding in found:
            out.write(f"  {finding.severity}: {finding.problem}\n")
    if report.fixes:
        out.write("to fix, an operator would run (nothing is altered automatically):\n")
        for fix in report.fixes:
            out.write(f"  {fix}\n")
    broker = settings.kafka.bootstrap_servers
    if report.errors:
        out.write(f"{len(report.errors)} problem(s) break a promise of the topics on {broker}\n")
    else:
        out.write(f"the topics on {broker} keep what the guarantees need\n")


def run(settings: ToolsConfig, action: Action, json_mode: bool, out: TextIO) -> int:
    """The command: create or check, print the report, return the exit code."""

    async def main(stopping: asyncio.Event) -> int:
        del stopping  # one short exchange with the broker: Ctrl-C cancels it
        try:
            report = await topics(settings, action)
        except (TopicSetupError, KafkaError, OSError) as exc:
            detail = str(exc) or repr(exc)
            message = f"topics {action} on {settings.kafka.bootstrap_servers}: {detail}"
            if json_mode:
                failed = {"tool": f"topics {action}", "error": message, "exit_code": EXIT_BROKER}
                out.write(orjson.dumps(failed).decode() + "\n")
            else:
                out.write(f"error: {message}\n")
            return EXIT_BROKER
        if json_mode:
            out.write(orjson.dumps(as_json(report, settings, action)).decode() + "\n")
        else:
            print_report(report, settings, out)
        return exit_code(report)

    return run_until_interrupted(main)
