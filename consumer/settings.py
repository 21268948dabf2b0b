"""The consumer's settings: its groups (`ConsumerSettings`, `DatabaseSettings`) and its root.

The database group is shared, read-only, with the bridge and the tools (through
`consumer.readside`).

Read once at start with `schemas.settings.load(ConsumerConfig)`; passed down explicitly.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from observability.settings import HealthSettings, LogSettings
from schemas.settings import ContractSettings, KafkaSettings, RetrySettings, TopicSettings

_DRIVER = "postgresql+asyncpg"
_SCHEMES = ("postgres", "postgresql", "postgresql+asyncpg")


class DatabaseSettings(BaseSettings):
    """Where the tasks live. The URL may hold a password: it is a secret (never shown)."""

    model_config = SettingsConfigDict(env_prefix="UCS_DATABASE_", extra="ignore", frozen=True)

    url: SecretStr = Field(
        default=SecretStr("postgresql+asyncpg://postgres@127.0.0.1:5433/ucs_tasks"),
        description="URL of the tasks database: `postgresql://`, `postgres://` or "
        "`postgresql+asyncpg://` (the asyncpg driver is always used); its password is never "
        "logged.",
    )
    pool_size: int = Field(default=5, ge=1, description="Connection pool size.")

    @field_validator("url")
    @classmethod
    def _asyncpg_url(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        scheme, sep, rest = text.partition("://")
        if not sep or scheme.lower() not in _SCHEMES:
            raise ValueError(
                "must be a PostgreSQL URL (postgresql://user:password@host:port/database)"
            )
        url = f"{_DRIVER}://{rest}"
        try:
            make_url(url)
        except ArgumentError:
            raise ValueError("is not a valid database URL") from None
        return SecretStr(url)

    @property
    def dsn(self) -> str:
        """The SQLAlchemy URL with its password (for the engine only, never for a log)."""
        return self.url.get_secret_value()

    @property
    def display_url(self) -> str:
        """The URL with its password masked, for logs and messages."""
        return make_url(self.dsn).render_as_string(hide_password=True)


class ConsumerSettings(BaseSettings):
    """The consume loop: group membership, batching, fetch waits, back-off (`UCS_*`)."""

    model_config = SettingsConfigDict(env_prefix="UCS_", extra="ignore", frozen=True)

    consumer_group: str = Field(default="ucs-tasks", description="Consumer group id.")
    consumer_session_timeout_ms: int = Field(
        default=10_000, ge=1, description="Group session timeout (a dead member is noticed then)."
    )
    consumer_heartbeat_interval_ms: int = Field(
        default=3_000,
        ge=1,
        description="Group heartbeat interval (below the session timeout; a third of it is usual).",
    )
    batch_max_records: int = Field(
        default=4000,
        ge=1,
        description="Most records taken per poll (one database round trip per lane); only a "
        "backlog fills a batch, a steady flow's batches hold what came during the batch linger.",
    )
    consumer_lanes: int = Field(
        default=2,
        ge=1,
        le=16,
        description="Partitions of a batch are decided in up to this many concurrent lanes "
        "(database transactions), one per 200 records of the batch.",
    )
    batch_linger_ms: int = Field(
        default=10,
        ge=0,
        description="Under load, a batch is taken at most this long after the previous one "
        "began, gathering what arrived meanwhile (fewer, larger transactions); an idle "
        "consumer starts at once.",
    )
    fetch_max_wait_ms: int = Field(
        default=50,
        ge=0,
        description="How long an idle consumer's fetch waits for records when none are ready.",
    )
    fetch_busy_wait_ms: int = Field(
        default=10,
        ge=0,
        description="The same wait while records keep coming (brokers that look for records "
        "only now and then during the wait, like tansu, then hand over the next records sooner).",
    )
    producer_linger_ms: int = Field(
        default=0,
        ge=0,
        description="Reply producer linger (replies already leave as one batch per partition).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.consumer_heartbeat_interval_ms >= self.consumer_session_timeout_ms:
            raise ValueError(
                f"UCS_CONSUMER_HEARTBEAT_INTERVAL_MS ({self.consumer_heartbeat_interval_ms}) "
                "must be below UCS_CONSUMER_SESSION_TIMEOUT_MS "
                f"({self.consumer_session_timeout_ms})"
            )
        if self.fetch_busy_wait_ms > self.fetch_max_wait_ms:
            raise ValueError(
                f"UCS_FETCH_BUSY_WAIT_MS ({self.fetch_busy_wait_ms}) must not be above "
                f"UCS_FETCH_MAX_WAIT_MS ({self.fetch_max_wait_ms})"
            )
        return self


class ConsumerConfig(BaseModel):
    """Everything the consumer process reads from its environment."""

    model_config = ConfigDict(frozen=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    contract: ContractSettings = Field(default_factory=ContractSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    log: LogSettings = Field(default_factory=LogSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
