"""Settings groups every process shares: the Kafka connection, the topics, the contract's rules.

Each group is a pydantic-settings model that reads its own `UCS_*` environment variables. A
process's root settings nest the groups it uses, beside its own, which live in its package:
`consumer.settings.ConsumerConfig`, `producer_tools.bridge.settings.BridgeConfig`,
`producer_tools.tools.settings.ToolsConfig`, `producer_tools.devstack.settings.DevConfig`; a root
that reads all three shared groups derives from `SharedConfig`.
Read once at start, passed down explicitly; nothing reads the environment later.

These three groups sit beside the wire contract because both deployables must agree on them:
the same topics, the same limits and rules for a valid event, the same Location template.
"""

from __future__ import annotations

import os
from typing import Any, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import wire
from schemas.limits import FieldMode, Limits
from schemas.tenants import Tenancy


class KafkaSettings(BaseSettings):
    """How every Kafka client of ours connects (`UCS_KAFKA_*`)."""

    model_config = SettingsConfigDict(env_prefix="UCS_KAFKA_", extra="ignore", frozen=True)

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="Kafka bootstrap servers, comma separated."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.",
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="`PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`."
    )
    sasl_username: str | None = Field(default=None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(
        default=None, description="SASL password (never logged)."
    )
    ssl_cafile: str | None = Field(default=None, description="CA bundle for SSL.")

    def client_options(self) -> dict[str, object]:
        """Connection options common to every aiokafka client (never logged: holds secrets)."""
        options: dict[str, object] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            if self.sasl_password is not None:
                options["sasl_plain_password"] = self.sasl_password.get_secret_value()
        if self.ssl_cafile:
            import ssl  # noqa: PLC0415 - only SSL deployments pay for it

            options["ssl_context"] = ssl.create_default_context(cafile=self.ssl_cafile)
        return options


class TopicSettings(BaseSettings):
    """The service's topics and how `ucs-tasks topics` creates them (`UCS_TOPIC_*`)."""

    model_config = SettingsConfigDict(env_prefix="UCS_TOPIC_", extra="ignore", frozen=True)

    requests: str = Field(
        default=wire.DEFAULT_REQUEST_TOPIC, description="Task-start requests topic."
    )
    created: str = Field(
        default=wire.DEFAULT_CREATED_TOPIC,
        description="Task-created events: every created reply, a complete log of tasks.",
    )
    rejected: str = Field(default=wire.DEFAULT_REJECTED_TOPIC, description="Task-rejected replies.")
    dead_letter: str = Field(
        default=wire.DEFAULT_DEAD_LETTER_TOPIC,
        description="Undecodable records, byte for byte, with error headers.",
    )
    partitions: int = Field(
        default=6,
        ge=1,
        description="Partitions when `ucs-tasks topics create` makes the topics (fewer is a "
        "warning of `ucs-tasks topics check`).",
    )
    replication_factor: int = Field(
        default=3,
        ge=1,
        description="Copies of every partition (`ucs-tasks topics` creates and checks them; 1 "
        "on a one-broker dev or test broker).",
    )
    min_insync_replicas: int = Field(
        default=2,
        ge=1,
        description="The topics' `min.insync.replicas`: how many copies an `acks=all` write "
        "waits for (at most the replication factor; 1 on a one-broker broker).",
    )

    @model_validator(mode="after")
    def _insync_within_replicas(self) -> Self:
        not_above(
            self, "min_insync_replicas", "replication_factor", ": every write would be refused"
        )
        return self

    def service_topics(self) -> tuple[str, ...]:
        """Every topic the consumer reads or writes, without repeats."""
        names = (self.requests, self.created, self.rejected, self.dead_letter)
        return tuple(dict.fromkeys(names))


def _bridge_base_uri() -> str:
    """The bridge's own URL + the API root: where a Location resolves by default."""
    host = os.environ.get("UCS_BRIDGE_HOST", "").strip() or "127.0.0.1"
    if host in ("0.0.0.0", "::"):  # noqa: S104 - a wildcard bind is reached on loopback here
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    port = os.environ.get("UCS_BRIDGE_PORT", "").strip() or "8080"
    return f"http://{host}:{port}/genesys/1/cs"


RECORD_HEADROOM_BYTES = 64 * 1024
"""Room beside a body for its record's key, headers and batch framing."""


class ContractSettings(BaseSettings):
    """The rules of a valid event and the Location template (`UCS_*`)."""

    model_config = SettingsConfigDict(env_prefix="UCS_", extra="ignore", frozen=True)

    max_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        description="Largest task-start body (HTTP 413, or a rejection, beyond it).",
    )
    max_string_length: int = Field(
        default=1024, ge=1, description="Longest value of a standard string field."
    )
    field_mode: FieldMode = Field(
        default=FieldMode.GENESYS,
        description='`genesys`: integer fields also take decimal strings (`"24"`) and string '
        "fields JSON integers (`42`), as Context Services does; `strict`: JSON types only.",
    )
    tenants: str = Field(
        default="",
        description="The configured tenants (ids or names, comma separated): a request names its "
        "own (`ContactCenterId` on HTTP, `tenantid` on Kafka) and sees only its own tasks. Empty: "
        "single-tenant.",
    )
    base_uri: str = Field(
        default="",
        validate_default=True,
        description="`${base_uri}` of the Location template. Default: the bridge's own address "
        "(`UCS_BRIDGE_HOST`, `UCS_BRIDGE_PORT`) + `/genesys/1/cs`. The consumer writes the "
        "Location into its replies: in a split deployment set it for the consumer and the "
        "bridge to the URL callers reach the bridge at.",
    )

    @field_validator("base_uri")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        return value.strip().rstrip("/") or _bridge_base_uri()

    @property
    def limits(self) -> Limits:
        """The validation limits these settings give."""
        return Limits(
            max_body_bytes=self.max_body_bytes,
            max_string_length=self.max_string_length,
            mode=self.field_mode,
        )

    @property
    def max_request_record_bytes(self) -> int:
        """The largest request record (a maximal body and its headers): the requests topic's
        `max.message.bytes` and the request producers' `max_request_size`."""
        return self.max_body_bytes + RECORD_HEADROOM_BYTES

    @property
    def max_reply_record_bytes(self) -> int:
        """The largest reply or dead-letter record: a reply carries the whole task (its attached
        data re-encoded), a dead letter the whole request record and the error headers. The
        reply topics' `max.message.bytes`, and the consumer's fetch and produce sizes."""
        return 2 * self.max_body_bytes + 2 * RECORD_HEADROOM_BYTES

    @property
    def tenancy(self) -> Tenancy:
        """The configured tenants (`UCS_TENANTS`)."""
        return Tenancy.parse(self.tenants)

    def location(self, service_id: int, task_id: int) -> str:
        """The contract's Location: `${base_uri}/service/${service_id}/tasks/${task_id}`."""
        return f"{self.base_uri}/service/{service_id}/tasks/{task_id}"


class RetrySettings(BaseSettings):
    """Back-off after a transient failure (broker or database away): `UCS_RETRY_BACKOFF_*`."""

    model_config = SettingsConfigDict(env_prefix="UCS_RETRY_BACKOFF_", extra="ignore", frozen=True)

    initial_ms: int = Field(
        default=200, ge=1, description="First back-off after a transient failure."
    )
    max_ms: int = Field(default=10_000, ge=1, description="Back-off cap for transient failures.")

    @model_validator(mode="after")
    def _initial_within_cap(self) -> Self:
        not_above(self, "initial_ms", "max_ms")
        return self

    def delay_s(self, attempt: int) -> float:
        """The back-off before retry number `attempt` (0-based): doubling, capped, no jitter."""
        return float(min(self.max_ms, self.initial_ms * 2 ** min(attempt, 30))) / 1000


class SharedConfig(BaseModel):
    """The groups every process reads (the broker, the topics, the contract): the base of a
    process's root settings, which adds its own groups after them."""

    model_config = ConfigDict(frozen=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    contract: ContractSettings = Field(default_factory=ContractSettings)


def env_name(group: type[BaseSettings], field: str) -> str:
    """The environment variable of one field of a settings group (`UCS_KAFKA_BOOTSTRAP_SERVERS`)."""
    return f"{group.model_config.get('env_prefix', '')}{field}".upper()


def not_above(group: BaseSettings, low: str, high: str, consequence: str = "") -> None:
    """A group's cross-field check: ValueError, in one line naming both variables and values
    (and `consequence` after them), when its field `low` is above its field `high`."""
    low_value, high_value = getattr(group, low), getattr(group, high)
    if low_value > high_value:
        raise ValueError(
            f"{env_name(type(group), low)} ({low_value}) must not be above "
            f"{env_name(type(group), high)} ({high_value}){consequence}"
        )


def to_env(*groups: BaseSettings) -> dict[str, str]:
    """The `UCS_*` variables that reproduce these groups in a child process (secrets included:
    hand them to a process environment, never to a log)."""
    env: dict[str, str] = {}
    for group in groups:
        for field in type(group).model_fields:
            value: Any = getattr(group, field)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[env_name(type(group), field)] = str(value)
    return env


class SettingsError(ValueError):
    """Settings that cannot be used; the message names each `UCS_` variable and its problem."""


def _describe(exc: ValidationError, group: type[BaseSettings]) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = [str(part) for part in error["loc"]]
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{env_name(group, loc[0])}: {message}" if loc else message)
    return lines


Config = TypeVar("Config", bound=BaseModel)


def load(root: type[Config]) -> Config:
    """A process's root settings, every group read from the environment.

    Raises SettingsError with one line per problem (`UCS_CONSUMER_LANES: Input should be ...`)
    instead of pydantic's multi-line report: what a process prints when it cannot start.
    """
    groups: dict[str, BaseSettings] = {}
    problems: list[str] = []
    for name, field in root.model_fields.items():
        group = field.annotation
        if not (isinstance(group, type) and issubclass(group, BaseSettings)):
            continue
        try:
            groups[name] = group()
        except ValidationError as exc:
            problems += _describe(exc, group)
    if problems:
        raise SettingsError("; ".join(problems))
    return root(**groups)
