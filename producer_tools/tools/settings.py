"""The operator tools' settings root: the shared groups, nothing of their own."""

from __future__ import annotations

from pydantic import Field

from consumer.readside import DatabaseSettings
from schemas.settings import SharedConfig


class ToolsConfig(SharedConfig):
    """Everything `send`, `produce`, `replay`, `export`, `tail` and `rebuild` read."""

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
