"""Kafka adapters: record translation, the reply publisher, the consume loop."""
