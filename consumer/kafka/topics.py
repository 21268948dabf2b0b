"""Creating and checking the service's topics: the one topic routine (`ucs-tasks topics`, the dev
stack, the tests) and the consumer's start-up check.

What the topics must be is `consumer.kafka.topic_rules`; this module asks the broker. Brokers
differ in what they tell (tansu, the embedded broker, reports only the configs set at creation,
and a missing topic as an empty config list): every answer is read defensively, every error
code checked (aiokafka returns per-topic errors instead of raising them).

Two broker behaviours shape the calls: a metadata request naming a missing topic may create it
(tansu does, and Kafka with `auto.create.topics.enable`), so topics are listed with a request
for all topics; and a DescribeConfigs filtered by key breaks tansu's connection, so every key
is fetched and filtered here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    InvalidReplicationFactorError,
    KafkaError,
    TopicAlreadyExistsError,
    for_code,
)

from consumer.kafka.topic_rules import (
    ObservedTopic,
    TopicReport,
    TopicSpec,
    review,
    service_topic_specs,
)
from schemas.errors import ServiceError
from schemas.settings import ContractSettings, KafkaSettings, TopicSettings

__all__ = [
    "TopicSetupError",
    "TopicsMissingError",
    "check_service_topics",
    "create_service_topics",
    "create_topics",
    "require_service_topics",
]

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_MS = 40_000
LISTED_WAIT_S = 10.0
"""How long a created topic may take to show in the metadata (Kafka's brokers learn of it
from the controller a moment after CreateTopics answers)."""


class TopicSetupError(ServiceError):
    """The topics cannot be created, or do not keep what the guarantees need (not retriable:
    an operator must act); the message is one line."""


class TopicsMissingError(KafkaError):  # type: ignore[misc]  # aiokafka is untyped
    """Some service topics do not exist yet (retriable: they may be being created)."""

    retriable = True


@asynccontextmanager
async def _admin(kafka: KafkaSettings, request_timeout_ms: int) -> AsyncIterator[Any]:
    admin = AIOKafkaAdminClient(**kafka.client_options(), request_timeout_ms=request_timeout_ms)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


def _error_name(code: int) -> str:
    return str(for_code(code).__name__)


async def _partitions(admin: Any, names: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    # All topics (no names): naming a missing topic in a metadata request may create it.
    wanted = set(names)
    return {
        topic["topic"]: topic["partitions"]
        for topic in await admin.describe_topics()
        if topic["topic"] in wanted and topic["error_code"] == 0
    }


async def _listed(admin: Any, names: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """`_partitions` once every one of `names` shows (just created), or what shows by then."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LISTED_WAIT_S
    while len(found := await _partitions(admin, names)) < len(set(names)):
        if loop.time() >= deadline:
            break
        await asyncio.sleep(0.1)
    return found


async def _configs(admin: Any, names: Sequence[str]) -> dict[str, dict[str, str] | str]:
    """Each topic's reported configs, or why they could not be read."""
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    found: dict[str, dict[str, str] | str] = {}
    for response in await admin.describe_configs(resources):
        for code, message, _type, name, entries in response.resources:
            if code != 0:
                found[name] = f"{_error_name(code)}: {message}" if message else _error_name(code)
                continue
            # (name, value, read_only, source or is_default, is_sensitive[, synonyms])
            found[name] = {entry[0]: entry[1] for entry in entries if entry[1] is not None}
    return found


async def describe(
    admin: Any, names: Sequence[str], created: Sequence[str] = ()
) -> dict[str, ObservedTopic]:
    """The topics among `names` that exist, as the broker describes them (`created`: topics
    just made, waited for until they show)."""
    partitions = await (_listed(admin, names) if created else _partitions(admin, names))
    if not partitions:
        return {}
    configs = await _configs(admin, list(partitions))
    observed = {}
    for name, parts in partitions.items():
        reported = configs.get(name, "not in the broker's answer")
        observed[name] = ObservedTopic(
            name=name,
            partitions=len(parts),
            replication_factor=min((len(p["replicas"]) for p in parts), default=0),
            configs=reported if isinstance(reported, dict) else None,
            configs_error=reported if isinstance(reported, str) else "",
        )
    return observed


async def create_topics(
    kafka: KafkaSettings,
    names: Sequence[str],
    partitions: int,
    configs: dict[str, str] | None = None,
    request_timeout_ms: int = REQUEST_TIMEOUT_MS,
    *,
    replication_factor: int | None = None,
) -> dict[str, list[int]]:
    """Create these topics (ones that exist are left as they are); each one's partitions.

    Without a `replication_factor`, as many replicas as there are brokers, at most 3.
    """
    async with _admin(kafka, request_timeout_ms) as admin:
        if replication_factor is None:
            brokers = (await admin.describe_cluster())["brokers"]
            replication_factor = max(1, min(3, len(brokers)))
        unique = list(dict.fromkeys(names))
        specs = [
            NewTopic(name, partitions, replication_factor, topic_configs=dict(configs or {}))
            for name in unique
        ]
        await _create(admin, specs)
        found = await _listed(admin, unique)
    missing = [name for name in unique if name not in found]
    if missing:
        raise TopicSetupError(f"created topics are not listed by the broker: {missing}")
    return {name: sorted(p["partition"] for p in found[name]) for name in unique}


async def _create(admin: Any, topics: Sequence[Any]) -> None:
    if not topics:
        return
    response = await admin.create_topics(list(topics))
    for topic, code, message in response.topic_errors:
        if code != 0 and for_code(code) is not TopicAlreadyExistsError:
            detail = f"{_error_name(code)}: {message}" if message else _error_name(code)
            if for_code(code) is InvalidReplicationFactorError:
                detail += (
                    " (UCS_TOPIC_REPLICATION_FACTOR and UCS_TOPIC_MIN_INSYNC_REPLICAS must not "
                    "exceed the brokers)"
                )
            raise TopicSetupError(f"cannot create topic {topic}: {detail}")


async def create_service_topics(
    kafka: KafkaSettings,
    topics: TopicSettings,
    contract: ContractSettings,
    partitions: int | None = None,
    request_timeout_ms: int = REQUEST_TIMEOUT_MS,
) -> TopicReport:
    """Create the service topics that do not exist, with the settings the guarantees need,
    then check them all (existing topics are never altered). `partitions` overrides
    `UCS_TOPIC_PARTITIONS` for the topics made now."""
    specs = service_topic_specs(topics, contract, partitions)
    names = [spec.name for spec in specs]
    async with _admin(kafka, request_timeout_ms) as admin:
        existing = await _partitions(admin, names)
        new = [spec for spec in specs if spec.name not in existing]
        await _create(admin, [_new_topic(spec) for spec in new])
        made = [spec.name for spec in new]
        observed = await describe(admin, names, made)
    return review(specs, observed, kafka.bootstrap_servers, made)


def _new_topic(spec: TopicSpec) -> Any:
    return NewTopic(
        spec.name,
        spec.partitions,
        spec.replication_factor,
        topic_configs=spec.creation_configs(),
    )


async def check_service_topics(
    kafka: KafkaSettings,
    topics: TopicSettings,
    contract: ContractSettings,
    request_timeout_ms: int = REQUEST_TIMEOUT_MS,
) -> TopicReport:
    """What is wrong with the service topics (nothing is created or changed)."""
    specs = service_topic_specs(topics, contract)
    async with _admin(kafka, request_timeout_ms) as admin:
        observed = await describe(admin, [spec.name for spec in specs])
    return review(specs, observed, kafka.bootstrap_servers)


async def require_service_topics(
    kafka: KafkaSettings, topics: TopicSettings, contract: ContractSettings
) -> None:
    """The consumer's start-up check, before it subscribes (a subscription would create a
    missing topic with the broker's defaults).

    Raises TopicsMissingError (retriable) while a topic does not exist, TopicSetupError with a
    one-line reason when a topic breaks a promise (the commands that fix it are logged); logs
    each warning once.
    """
    report = await check_service_topics(kafka, topics, contract)
    if report.missing:
        raise TopicsMissingError(
            f"topics {', '.join(report.missing)} do not exist (or may not be described by "
            "this client): create them with `ucs-tasks topics create`"
        )
    for warning in report.warnings:
        log.warning("topic %s", warning)
    if report.errors:
        for fix in report.fixes:
            log.error("to fix the topics, an operator would run: %s", fix)
        raise TopicSetupError(
            "the topics do not keep what the guarantees need: "
            f"{report.reason()} (`ucs-tasks topics check` lists the fixes)"
        )
