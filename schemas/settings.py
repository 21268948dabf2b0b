"""Typed settings, shared by both deployables: every field is an env var with the prefix `UCS_`.

Read once at start (`Settings()`), passed down explicitly; nothing reads the environment later.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import wire


class Settings(BaseSettings):
    """ucs-tasks configuration. The README's configuration table is generated from this class."""

    model_config = SettingsConfigDict(env_prefix="UCS_", extra="ignore", frozen=True)

    # --- Kafka
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="Kafka bootstrap servers, comma separated."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="Kafka security protocol."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism when the protocol is SASL_*."
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(default=None, description="SASL password.")
    kafka_ssl_cafile: str | None = Field(default=None, description="CA bundle for SSL.")
    topic_requests: str = Field(
        default=wire.DEFAULT_REQUEST_TOPIC, description="Task-start requests topic."
    )
    topic_created: str = Field(
        default=wire.DEFAULT_CREATED_TOPIC,
        description="Task-created events: every created reply, a complete log of tasks.",
    )
    topic_rejected: str = Field(
        default=wire.DEFAULT_REJECTED_TOPIC, description="Task-rejected replies (default)."
    )
    topic_dead_letter: str = Field(
        default=wire.DEFAULT_DEAD_LETTER_TOPIC,
        description="Undecodable records, byte for byte, with error headers.",
    )
    topic_partitions: int = Field(
        default=6, ge=1, description="Partitions when `ucs-tasks` creates the topics."
    )
    consumer_group: str = Field(default="ucs-tasks", description="Consumer group id.")
    consumer_session_timeout_ms: int = Field(
        default=10_000, ge=1, description="Group session timeout (a dead member is noticed then)."
    )
    consumer_heartbeat_interval_ms: int = Field(
        default=3_000, ge=1, description="Group heartbeat interval (below a third of the session)."
    )

    # --- PostgreSQL
    database_url: str = Field(
        default="postgresql+asyncpg://postgres@127.0.0.1:5433/ucs_tasks",
        description="SQLAlchemy URL of the tasks database (asyncpg driver).",
    )
    database_pool_size: int = Field(default=5, ge=1, description="Connection pool size.")

    # --- consumer tuning
    batch_max_records: int = Field(
        default=4000,
        ge=1,
        description="Most records taken per poll (one DB round trip per lane); only a backlog "
        "fills a batch, a steady flow's batches hold what came during the batch linger.",
    )
    consumer_lanes: int = Field(
        default=2,
        ge=1,
        le=16,
        description="Partitions of a batch are settled in up to this many concurrent lanes "
        "(transactions), one per 200 records of the batch.",
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
        description="The same wait while records keep coming (brokers that answer only at "
        "the end of the wait, like tansu, then hand over the next records sooner).",
    )
    producer_linger_ms: int = Field(
        default=0,
        ge=0,
        description="Reply producer linger: replies already leave as one record batch per "
        "partition, so a linger only delays them.",
    )
    retry_backoff_initial_ms: int = Field(
        default=200, ge=1, description="First back-off after a transient failure."
    )
    retry_backoff_max_ms: int = Field(
        default=10_000, ge=1, description="Back-off cap for transient failures."
    )

    # --- contract limits
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest task-start body (HTTP 413 beyond it)."
    )
    max_string_length: int = Field(
        default=1024, ge=1, description="Longest value of a standard string field."
    )
    base_uri: str = Field(
        default="http://127.0.0.1:8080/genesys/1/cs",
        description="`${base_uri}` of the Location template.",
    )

    # --- HTTP bridge
    bridge_host: str = Field(default="127.0.0.1", description="Bridge listen address.")
    bridge_port: int = Field(default=8080, ge=0, le=65535, description="Bridge listen port.")
    bridge_reply_timeout_ms: int = Field(
        default=5_000, ge=1, description="How long the bridge waits for a reply."
    )
    bridge_accept_on_timeout: bool = Field(
        default=True, description="On reply timeout answer 202 + status Location (else 504)."
    )
    bridge_reply_topic: str | None = Field(
        default=None,
        description="This bridge instance's own reply topic (created at start if missing); "
        "default `ucs.tasks.replies.<host name>-<bridge_port>`, stable across restarts.",
    )
    bridge_reply_partitions: int = Field(
        default=1, ge=1, description="Partitions when the bridge creates its reply topic."
    )
    bridge_send_timeout_ms: int = Field(
        default=3_000,
        ge=1,
        description="Longest wait for the broker to acknowledge a request (503 beyond it).",
    )
    bridge_access_log: bool = Field(default=True, description="Log every HTTP request.")
    bridge_auth_tokens: SecretStr = Field(
        default=SecretStr(""),
        description="Accepted bearer tokens / API keys, comma separated (never logged); empty: "
        "the bridge asks for none.",
    )
    bridge_linger_ms: int = Field(
        default=0,
        ge=0,
        description="Bridge producer linger: 0 sends at once (requests still batch while one "
        "is in flight).",
    )
    bridge_reply_fetch_wait_ms: int = Field(
        default=10,
        ge=0,
        description="Longest wait of one fetch on the reply topic (bounds reply latency on "
        "brokers that do not answer a long poll early, like tansu).",
    )

    # --- dev stack
    dev_data_dir: str = Field(
        default=".devstack", description="Where `ucs-tasks dev` keeps the embedded database."
    )
    dev_kafka_port: int = Field(default=9092, description="Embedded broker port (`ucs-tasks dev`).")
    dev_postgres_port: int = Field(
        default=5433, description="Embedded PostgreSQL port (`ucs-tasks dev`)."
    )

    @field_validator("base_uri")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    def location(self, service_id: int, task_id: int) -> str:
        """The contract's Location: `${base_uri}/service/${service_id}/tasks/${task_id}`."""
        return f"{self.base_uri}/service/{service_id}/tasks/{task_id}"

    def kafka_client_options(self) -> dict[str, object]:
        """Connection options common to every aiokafka client (never logged: holds secrets)."""
        options: dict[str, object] = {
            "bootstrap_servers": self.kafka_bootstrap_servers,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            if self.kafka_sasl_password is not None:
                options["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_cafile:
            import ssl  # noqa: PLC0415 - only SSL deployments pay for it

            options["ssl_context"] = ssl.create_default_context(cafile=self.kafka_ssl_cafile)
        return options
