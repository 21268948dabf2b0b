"""What the service topics must be, and how a described topic compares (describe results as
data: what the embedded broker cannot show, such as a Kafka that reports every key)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from consumer.kafka.topic_rules import (
    ObservedTopic,
    Severity,
    TopicSpec,
    compare,
    review,
    service_topic_specs,
)
from schemas.settings import ContractSettings, TopicSettings

TOPICS = TopicSettings(
    requests="r.start",
    created="r.created",
    rejected="r.rejected",
    dead_letter="r.dlq",
    partitions=6,
    replication_factor=3,
    min_insync_replicas=2,
)
CONTRACT = ContractSettings(max_body_bytes=1_048_576)
BOOTSTRAP = "kafka-1:9092,kafka-2:9092"

# What Apache Kafka reports for a topic created with no overrides (broker defaults).
KAFKA_DEFAULTS = {
    "cleanup.policy": "delete",
    "retention.ms": "604800000",
    "retention.bytes": "-1",
    "min.insync.replicas": "1",
    "max.message.bytes": "1048588",
    "segment.bytes": "1073741824",
}


def specs() -> dict[str, TopicSpec]:
    return {spec.name: spec for spec in service_topic_specs(TOPICS, CONTRACT)}


def as_created(spec: TopicSpec, **changes: object) -> ObservedTopic:
    """The topic as a broker that reports every key describes it right after our creation."""
    configs = {**KAFKA_DEFAULTS, **spec.creation_configs()}
    fields: dict[str, object] = {
        "name": spec.name,
        "partitions": spec.partitions,
        "replication_factor": spec.replication_factor,
        "configs": configs,
    }
    return ObservedTopic(**(fields | changes))  # type: ignore[arg-type]


def test_the_created_events_log_is_kept_forever_and_every_topic_holds_its_largest_record() -> None:
    by_name = specs()
    assert list(by_name) == ["r.start", "r.created", "r.rejected", "r.dlq"]
    created = by_name["r.created"].creation_configs()
    assert created["retention.ms"] == "-1"
    assert created["retention.bytes"] == "-1"
    assert created["cleanup.policy"] == "delete"
    for name in ("r.start", "r.rejected", "r.dlq"):
        assert "retention.ms" not in by_name[name].creation_configs()
    assert by_name["r.start"].creation_configs()["max.message.bytes"] == str(
        CONTRACT.max_request_record_bytes
    )
    for name in ("r.created", "r.rejected", "r.dlq"):
        configs = by_name[name].creation_configs()
        assert configs["max.message.bytes"] == str(CONTRACT.max_reply_record_bytes)
    for spec in by_name.values():
        assert spec.creation_configs()["min.insync.replicas"] == "2"
        assert (spec.partitions, spec.replication_factor) == (6, 3)


def test_a_larger_body_limit_raises_every_topics_record_limit() -> None:
    larger = ContractSettings(max_body_bytes=4 * 1_048_576)
    big = {spec.name: spec for spec in service_topic_specs(TOPICS, larger)}
    for name, spec in specs().items():
        assert int(big[name].configs["max.message.bytes"].value) > int(
            spec.configs["max.message.bytes"].value
        )


def test_topics_as_created_have_nothing_wrong() -> None:
    by_name = specs()
    report = review(list(by_name.values()), {n: as_created(s) for n, s in by_name.items()}, "b")
    assert report.findings == ()
    assert report.fixes == ()


def test_a_created_log_with_the_brokers_default_retention_is_an_error_with_its_fix() -> None:
    spec = specs()["r.created"]
    configs = {**KAFKA_DEFAULTS, "min.insync.replicas": "2", "max.message.bytes": "9999999"}
    report = review([spec], {spec.name: as_created(spec, configs=configs)}, BOOTSTRAP)

    assert [(f.subject, f.severity) for f in report.findings] == [("retention.ms", "error")]
    (finding,) = report.errors
    assert "retention.ms is 604800000, must be -1" in finding.problem
    assert "rebuild" in finding.problem
    assert report.fixes == (
        "kafka-configs.sh --bootstrap-server kafka-1:9092 --alter --entity-type topics "
        "--entity-name r.created --add-config retention.ms=-1",
    )
    assert report.reason().startswith("r.created: retention.ms is 604800000")
    assert "\n" not in report.reason()


def test_a_compacted_or_size_bounded_created_log_is_an_error() -> None:
    spec = specs()["r.created"]
    configs = {**spec.creation_configs(), "cleanup.policy": "compact", "retention.bytes": "1000"}
    found = compare(spec, as_created(spec, configs=configs))
    assert {(f.subject, f.severity) for f in found} == {
        ("cleanup.policy", Severity.ERROR),
        ("retention.bytes", Severity.ERROR),
    }


def test_keys_the_broker_does_not_report_are_warnings_not_errors() -> None:
    # tansu reports only the keys given at creation: a topic made without them shows none.
    by_name = specs()
    observed = {n: as_created(s, configs={}) for n, s in by_name.items()}
    report = review(list(by_name.values()), observed, BOOTSTRAP)
    assert report.errors == []
    assert {f.subject for f in report.warnings} == {
        "min.insync.replicas",
        "max.message.bytes",
        "retention.ms",
        "retention.bytes",
        "cleanup.policy",
    }
    assert all("not reported by the broker" in f.problem for f in report.warnings)
    # The command that sets them explicitly is printed all the same.
    assert any("retention.ms=-1" in fix and "r.created" in fix for fix in report.fixes)


def test_configs_that_cannot_be_read_are_one_warning_per_topic() -> None:
    spec = specs()["r.start"]
    observed = as_created(spec, configs=None, configs_error="TopicAuthorizationFailedError")
    (finding,) = compare(spec, observed)
    assert finding.severity is Severity.WARNING
    assert "TopicAuthorizationFailedError" in finding.problem


def test_a_missing_topic_is_an_error_fixed_by_ucs_tasks_topics_create() -> None:
    by_name = specs()
    observed = {n: as_created(s) for n, s in by_name.items() if n != "r.dlq"}
    report = review(list(by_name.values()), observed, BOOTSTRAP)
    assert report.missing == ["r.dlq"]
    assert [str(f) for f in report.errors] == ["r.dlq: does not exist"]
    assert report.fixes == ("ucs-tasks topics create",)


def test_fewer_partitions_warn_and_fewer_replicas_fail() -> None:
    spec = specs()["r.start"]
    found = compare(spec, as_created(spec, partitions=2, replication_factor=1))
    severities = {f.subject: f.severity for f in found}
    assert severities["partitions"] is Severity.WARNING
    assert severities["replication factor"] is Severity.ERROR
    report = review([spec], {spec.name: as_created(spec, partitions=2, replication_factor=1)}, "b")
    assert any("kafka-topics.sh" in fix and "--partitions 6" in fix for fix in report.fixes)
    assert any("kafka-reassign-partitions.sh" in fix for fix in report.fixes)


def test_more_partitions_replicas_or_room_than_asked_are_fine() -> None:
    spec = specs()["r.rejected"]
    configs = {
        **spec.creation_configs(),
        "max.message.bytes": str(10 * CONTRACT.max_reply_record_bytes),
        "min.insync.replicas": "3",
    }
    observed = as_created(spec, partitions=12, replication_factor=5, configs=configs)
    assert compare(spec, observed) == []


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("max.message.bytes", "1048588", "must be at least"),
        ("min.insync.replicas", "1", "must be at least 2"),
        ("max.message.bytes", "lots", "must be at least"),
    ],
)
def test_too_small_a_record_limit_or_in_sync_minimum_is_an_error(
    key: str, value: str, expected: str
) -> None:
    spec = specs()["r.rejected"]
    configs = {**spec.creation_configs(), key: value}
    (finding,) = compare(spec, as_created(spec, configs=configs))
    assert (finding.subject, finding.severity) == (key, Severity.ERROR)
    assert expected in finding.problem


def test_an_in_sync_minimum_above_the_replicas_refuses_every_write() -> None:
    spec = specs()["r.rejected"]
    configs = {**spec.creation_configs(), "min.insync.replicas": "4"}
    (finding,) = compare(spec, as_created(spec, configs=configs))
    assert "every acks=all write is refused" in finding.problem


def test_roles_sharing_one_topic_get_the_stricter_settings() -> None:
    shared = TOPICS.model_copy(update={"rejected": "r.created"})
    by_name = {spec.name: spec for spec in service_topic_specs(shared, CONTRACT)}
    assert list(by_name) == ["r.start", "r.created", "r.dlq"]
    merged = by_name["r.created"]
    assert merged.roles == ("created", "rejected")
    assert merged.creation_configs()["retention.ms"] == "-1"


def test_a_partition_count_override_applies_to_every_topic() -> None:
    assert {spec.partitions for spec in service_topic_specs(TOPICS, CONTRACT, 2)} == {2}


def test_the_in_sync_minimum_may_not_exceed_the_replication_factor() -> None:
    with pytest.raises(ValidationError, match=r"UCS_TOPIC_MIN_INSYNC_REPLICAS \(2\) must not be"):
        TopicSettings(replication_factor=1)
    assert TopicSettings(replication_factor=1, min_insync_replicas=1).replication_factor == 1
    defaults = TopicSettings()
    assert (defaults.replication_factor, defaults.min_insync_replicas) == (3, 2)
