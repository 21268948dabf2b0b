"""The operator tools' settings root: the shared groups, nothing of their own."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from consumer.readside import DatabaseSettings
from schemas.settings import ContractSettings, KafkaSettings, TopicSettings


class ToolsConfig(BaseModel):
    """Everything `send`, `produce`, `replay`, `export`, `tail` and `rebuild` read."""

    model_config = ConfigDict(frozen=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    contract: ContractSettings = Field(default_factory=ContractSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
