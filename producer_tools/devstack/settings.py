"""The dev stack's settings: its own group (`DevSettings`) and its root (`DevConfig`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from consumer.readside import DatabaseSettings
from producer_tools.bridge.settings import BridgeSettings
from schemas.settings import SharedConfig


class DevSettings(BaseSettings):
    """`ucs-tasks dev` (`UCS_DEV_*`)."""

    model_config = SettingsConfigDict(env_prefix="UCS_DEV_", extra="ignore", frozen=True)

    data_dir: str = Field(
        default=".devstack", description="Where `ucs-tasks dev` keeps the embedded database."
    )
    kafka_port: int = Field(default=9092, description="Embedded broker port (`ucs-tasks dev`).")
    postgres_port: int = Field(
        default=5433, description="Embedded PostgreSQL port (`ucs-tasks dev`)."
    )


class DevConfig(SharedConfig):
    """What the dev stack reads: where its servers are (or go) and the bridge's address."""

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    bridge: BridgeSettings = Field(default_factory=BridgeSettings)
    dev: DevSettings = Field(default_factory=DevSettings)
