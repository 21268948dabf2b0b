"""The bridge's settings: its own group (`BridgeSettings`) and its root (`BridgeConfig`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from consumer.readside import DatabaseSettings
from schemas.settings import ContractSettings, KafkaSettings, RetrySettings, TopicSettings


class BridgeSettings(BaseSettings):
    """The HTTP bridge (`UCS_BRIDGE_*`)."""

    model_config = SettingsConfigDict(env_prefix="UCS_BRIDGE_", extra="ignore", frozen=True)

    host: str = Field(default="127.0.0.1", description="Bridge listen address.")
    port: int = Field(default=8080, ge=0, le=65535, description="Bridge listen port.")
    reply_timeout_ms: int = Field(
        default=5_000, ge=1, description="How long the bridge waits for a reply."
    )
    accept_on_timeout: bool = Field(
        default=True, description="On reply timeout answer 202 + a status Location (else 504)."
    )
    reply_topic: str | None = Field(
        default=None,
        description="This bridge instance's own reply topic (created at start if missing); "
        "default `ucs.tasks.replies.<host>-<port>`, stable across restarts.",
    )
    reply_partitions: int = Field(
        default=1, ge=1, description="Partitions when the bridge creates its reply topic."
    )
    send_timeout_ms: int = Field(
        default=3_000,
        ge=1,
        description="Longest wait for the broker to acknowledge a request (503 beyond it).",
    )
    access_log: bool = Field(default=True, description="Log every HTTP request.")
    auth_tokens: SecretStr = Field(
        default=SecretStr(""),
        description="Accepted bearer tokens / API keys, comma separated (never logged); empty: "
        "no authentication.",
    )
    linger_ms: int = Field(default=0, ge=0, description="Bridge producer linger: 0 sends at once.")
    reply_fetch_wait_ms: int = Field(
        default=10,
        ge=0,
        description="Longest wait of one fetch on the reply topic (bounds reply latency).",
    )


class BridgeConfig(BaseModel):
    """Everything the bridge process reads from its environment."""

    model_config = ConfigDict(frozen=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    contract: ContractSettings = Field(default_factory=ContractSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    bridge: BridgeSettings = Field(default_factory=BridgeSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
