"""What the service's topics must be, and what is wrong with a topic as a broker describes it.

No I/O here (`consumer.kafka.topics` talks to the broker): the one home of the topic settings
the guarantees depend on (docs/guarantees.md, "Topics"):

- every topic: `UCS_TOPIC_REPLICATION_FACTOR` copies and `min.insync.replicas` =
  `UCS_TOPIC_MIN_INSYNC_REPLICAS` (so `acks=all` means that many copies), and a
  `max.message.bytes` that holds the largest record the contract allows (requests:
  `ContractSettings.max_request_record_bytes`; replies and dead letters:
  `max_reply_record_bytes`, both derived from `UCS_MAX_BODY_BYTES`);
- the created-events log (`UCS_TOPIC_CREATED`), which `ucs-tasks rebuild` restores tasks from,
  is kept forever: `retention.ms=-1`, `retention.bytes=-1`, `cleanup.policy=delete` (compaction
  would keep one record per key, and the key is the service id).

A finding is an error when a promise is broken (a missing topic, too few copies, a config with
another value) and a warning otherwise (fewer partitions than asked: less parallelism, no
promise; a key the broker does not report: some brokers, tansu among them, report only the keys
set at creation). Configs are never altered automatically: Kafka's AlterConfigs replaces a
topic's whole set of overrides. Each finding comes with the command an operator would run.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal

from schemas.settings import ContractSettings, TopicSettings

__all__ = [
    "Expected",
    "Finding",
    "ObservedTopic",
    "Severity",
    "TopicReport",
    "TopicSpec",
    "compare",
    "review",
    "service_topic_specs",
]

Rule = Literal["exact", "at least"]

_KEEP_EVERY_TASK = (
    "the created-events log is what `ucs-tasks rebuild` restores tasks from: it must keep "
    "every record"
)


@dataclass(frozen=True, slots=True)
class Expected:
    """One topic config the guarantees need: its value, how it is compared, and why."""

    value: str
    rule: Rule
    why: str


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic as `ucs-tasks topics create` makes it and `check` expects it."""

    name: str
    roles: tuple[str, ...]
    partitions: int
    replication_factor: int
    configs: Mapping[str, Expected]

    def creation_configs(self) -> dict[str, str]:
        """The topic configs given at creation."""
        return {key: expected.value for key, expected in self.configs.items()}


@dataclass(frozen=True, slots=True)
class ObservedTopic:
    """A topic as the broker describes it."""

    name: str
    partitions: int
    replication_factor: int
    """The fewest replicas of any of its partitions."""
    configs: Mapping[str, str] | None
    """Every config the broker reports; None when they could not be read."""
    configs_error: str = ""
    """Why the configs could not be read."""


class Severity(StrEnum):
    """An error breaks a promise of docs/guarantees.md; a warning does not, or cannot tell."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing wrong with one topic, in one line."""

    topic: str
    severity: Severity
    subject: str
    """`topic`, `partitions`, `replication factor`, or the config key."""
    problem: str

    def __str__(self) -> str:
        return f"{self.topic}: {self.problem}"


@dataclass(frozen=True)
class TopicReport:
    """What a check found, and the commands that would fix it."""

    topics: tuple[str, ...]
    findings: tuple[Finding, ...] = ()
    fixes: tuple[str, ...] = ()
    created: tuple[str, ...] = field(default=())
    """Topics `ucs-tasks topics create` made in this run."""

    @property
    def errors(self) -> list[Finding]:
        """Findings that break a promise."""
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Finding]:
        """Findings that break none, or that cannot be confirmed."""
        return [f for f in self.findings if f.severity is Severity.WARNING]

    @property
    def missing(self) -> list[str]:
        """Topics that do not exist."""
        return [f.topic for f in self.findings if f.subject == "topic"]

    def reason(self) -> str:
        """The errors in one line (what a process that cannot start prints)."""
        return "; ".join(str(f) for f in self.errors)


def _record_bytes(size: int, what: str) -> Expected:
    return Expected(str(size), "at least", f"{what}, from UCS_MAX_BODY_BYTES")


def _role_configs(
    role: str, topics: TopicSettings, contract: ContractSettings
) -> dict[str, Expected]:
    configs = {
        "min.insync.replicas": Expected(
            str(topics.min_insync_replicas),
            "at least",
            "UCS_TOPIC_MIN_INSYNC_REPLICAS: how many copies an acks=all write waits for",
        ),
    }
    if role == "requests":
        configs["max.message.bytes"] = _record_bytes(
            contract.max_request_record_bytes, "the largest request record"
        )
    else:
        configs["max.message.bytes"] = _record_bytes(
            contract.max_reply_record_bytes, "the largest reply or dead-letter record"
        )
    if role == "created":
        configs["retention.ms"] = Expected("-1", "exact", _KEEP_EVERY_TASK)
        configs["retention.bytes"] = Expected("-1", "exact", _KEEP_EVERY_TASK)
        configs["cleanup.policy"] = Expected(
            "delete", "exact", f"{_KEEP_EVERY_TASK} (compaction keeps one per key)"
        )
    return configs


def _stricter(held: Expected, other: Expected) -> Expected:
    if held.rule == "exact":
        return held
    if other.rule == "exact" or int(other.value) > int(held.value):
        return other
    return held


def _merge(held: TopicSpec, other: TopicSpec) -> TopicSpec:
    configs = dict(held.configs)
    for key, expected in other.configs.items():
        configs[key] = _stricter(configs[key], expected) if key in configs else expected
    return replace(held, roles=held.roles + other.roles, configs=configs)


def service_topic_specs(
    topics: TopicSettings, contract: ContractSettings, partitions: int | None = None
) -> tuple[TopicSpec, ...]:
    """The four service topics (one spec per name, the stricter rule where two roles share
    one); `partitions` overrides `UCS_TOPIC_PARTITIONS`."""
    roles = {
        "requests": topics.requests,
        "created": topics.created,
        "rejected": topics.rejected,
        "dead letters": topics.dead_letter,
    }
    specs: dict[str, TopicSpec] = {}
    for role, name in roles.items():
        spec = TopicSpec(
            name,
            (role,),
            partitions or topics.partitions,
            topics.replication_factor,
            _role_configs(role, topics, contract),
        )
        specs[name] = _merge(specs[name], spec) if name in specs else spec
    return tuple(specs.values())


def _as_int(value: str) -> int | None:
    try:
        return int(value.strip())
    except ValueError:
        return None


def _matches(observed: str, expected: Expected) -> bool:
    have, want = _as_int(observed), _as_int(expected.value)
    if expected.rule == "at least":
        return have is not None and want is not None and have >= want
    if have is not None and want is not None:
        return have == want
    return observed.strip().lower() == expected.value.lower()


def _config_findings(spec: TopicSpec, observed: ObservedTopic) -> list[Finding]:
    found: list[Finding] = []
    if observed.configs is None:
        keys = ", ".join(spec.configs)
        problem = f"its configs cannot be read ({observed.configs_error}): cannot confirm {keys}"
        return [Finding(spec.name, Severity.WARNING, "configs", problem)]
    for key, expected in spec.configs.items():
        want = f"{'at least ' if expected.rule == 'at least' else ''}{expected.value}"
        value = observed.configs.get(key)
        if value is None:
            problem = (
                f"{key} is not reported by the broker (some report only the keys set at "
                f"creation): cannot confirm {want} ({expected.why})"
            )
            found.append(Finding(spec.name, Severity.WARNING, key, problem))
        elif not _matches(value, expected):
            problem = f"{key} is {value}, must be {want} ({expected.why})"
            found.append(Finding(spec.name, Severity.ERROR, key, problem))
    insync = _as_int(observed.configs.get("min.insync.replicas", ""))
    if insync is not None and insync > observed.replication_factor:
        problem = (
            f"min.insync.replicas {insync} is above its {observed.replication_factor} "
            "replicas: every acks=all write is refused"
        )
        found.append(Finding(spec.name, Severity.ERROR, "min.insync.replicas", problem))
    return found


def compare(spec: TopicSpec, observed: ObservedTopic | None) -> list[Finding]:
    """What is wrong with one topic (`observed` None: it does not exist)."""
    if observed is None:
        return [Finding(spec.name, Severity.ERROR, "topic", "does not exist")]
    found: list[Finding] = []
    if observed.partitions < spec.partitions:
        problem = (
            f"has {observed.partitions} partitions, UCS_TOPIC_PARTITIONS asks for "
            f"{spec.partitions} (fewer consumers can share the work)"
        )
        found.append(Finding(spec.name, Severity.WARNING, "partitions", problem))
    if observed.replication_factor < spec.replication_factor:
        problem = (
            f"has {observed.replication_factor} replicas per partition, "
            f"UCS_TOPIC_REPLICATION_FACTOR asks for {spec.replication_factor} (losing a "
            "broker could lose acknowledged records)"
        )
        found.append(Finding(spec.name, Severity.ERROR, "replication factor", problem))
    return found + _config_findings(spec, observed)


def _fixes(specs: Sequence[TopicSpec], findings: Iterable[Finding], bootstrap: str) -> list[str]:
    by_topic: dict[str, set[str]] = {}
    for finding in findings:
        by_topic.setdefault(finding.topic, set()).add(finding.subject)
    server = shlex.quote(bootstrap.split(",", maxsplit=1)[0])
    fixes: list[str] = []
    if any("topic" in subjects for subjects in by_topic.values()):
        fixes.append("ucs-tasks topics create")
    for spec in specs:
        subjects = by_topic.get(spec.name, set())
        name = shlex.quote(spec.name)
        keys = [key for key in spec.configs if key in subjects or "configs" in subjects]
        if keys:
            pairs = ",".join(f"{key}={spec.configs[key].value}" for key in keys)
            fixes.append(
                f"kafka-configs.sh --bootstrap-server {server} --alter --entity-type topics "
                f"--entity-name {name} --add-config {pairs}"
            )
        if "partitions" in subjects:
            fixes.append(
                f"kafka-topics.sh --bootstrap-server {server} --alter --topic {name} "
                f"--partitions {spec.partitions}  # moves services to other partitions"
            )
        if "replication factor" in subjects:
            fixes.append(
                f"kafka-reassign-partitions.sh --bootstrap-server {server} --execute "
                f"--reassignment-json-file <a plan giving each partition of {spec.name} "
                f"{spec.replication_factor} replicas>"
            )
    return fixes


def review(
    specs: Sequence[TopicSpec],
    observed: Mapping[str, ObservedTopic],
    bootstrap: str,
    created: Sequence[str] = (),
) -> TopicReport:
    """Every finding of every topic, and the commands that would fix them."""
    findings = [f for spec in specs for f in compare(spec, observed.get(spec.name))]
    return TopicReport(
        topics=tuple(spec.name for spec in specs),
        findings=tuple(findings),
        fixes=tuple(_fixes(specs, findings, bootstrap)),
        created=tuple(created),
    )
