"""Logging settings shared by every process (`UCS_LOG_*`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LogSettings(BaseSettings):
    """How a process logs (`UCS_LOG_FORMAT`, `UCS_LOG_LEVEL`, `UCS_LOG_RATE_PER_MINUTE`)."""

    model_config = SettingsConfigDict(env_prefix="UCS_LOG_", extra="ignore", frozen=True)

    format: Literal["text", "json"] = Field(
        default="text",
        description="`text` for people, `json` for log collectors (one JSON object per line).",
    )
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Lowest level logged."
    )
    rate_per_minute: int = Field(
        default=60,
        ge=1,
        description="Most lines per minute for each kind of per-record report (rejections, dead "
        "letters); the rest are counted and summarised, so a flood cannot fill a disk.",
    )


class HealthSettings(BaseSettings):
    """The consumer's own small HTTP port: `/metrics`, `/healthz`, `/readyz`
    (`UCS_CONSUMER_HEALTH_HOST`, `UCS_CONSUMER_HEALTH_PORT`)."""

    model_config = SettingsConfigDict(
        env_prefix="UCS_CONSUMER_HEALTH_", extra="ignore", frozen=True
    )

    host: str = Field(
        default="127.0.0.1",
        description="Address of the consumer's health and metrics port (0.0.0.0 in a container).",
    )
    port: int = Field(
        default=8081,
        ge=0,
        le=65535,
        description="The consumer's health and metrics port (`/metrics`, `/healthz`, `/readyz`); "
        "0 picks a free one.",
    )
