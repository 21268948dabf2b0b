"""The bridge's settings: its own group (`BridgeSettings`) and its root (`BridgeConfig`)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from consumer.readside import DatabaseSettings
from observability.settings import LogSettings
from schemas.settings import RetrySettings, SharedConfig


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
    legacy_paths: bool = Field(
        default=True,
        description="Also serve the 8.0/8.1 paths (`/services/...` without `/genesys/1/cs`).",
    )
    # The bounds of the HTTP server (producer_tools/bridge/protocol.py; docs/http-api.md).
    max_connections: int = Field(
        default=2_000,
        ge=1,
        description="Most open connections; one more is closed at once, unanswered.",
    )
    max_pending_requests: int = Field(
        default=500,
        ge=1,
        description="Most requests in progress; one more is a 503 with Retry-After "
        "(/healthz and /readyz excepted).",
    )
    header_timeout_ms: int = Field(
        default=10_000,
        ge=1,
        description="A request's header fields must arrive within this long of the connection "
        "opening, or on a kept-alive connection of their first bytes (408; a connection that "
        "sent nothing is closed).",
    )
    body_timeout_ms: int = Field(
        default=30_000,
        ge=1,
        description="A request's body must arrive within this long of its header fields (408).",
    )
    max_url_bytes: int = Field(
        default=8_192, ge=64, description="Longest request target, query included (414)."
    )
    max_headers: int = Field(default=100, ge=8, description="Most header fields (431).")
    max_header_bytes: int = Field(
        default=16_384, ge=1_024, description="Most bytes of header fields in all (431)."
    )


class BridgeConfig(SharedConfig):
    """Everything the bridge process reads from its environment."""

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    bridge: BridgeSettings = Field(default_factory=BridgeSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    log: LogSettings = Field(default_factory=LogSettings)
