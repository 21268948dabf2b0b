"""Everything that produces task-start events: the CLI, the HTTP bridge, the tools, the dev stack.

Imports `schemas` (the wire contract) and, for reads only, `consumer.db.reads`; never the consumer's
service, runner or Kafka adapters: the consumer runs as its own process (`python -m consumer`).
"""
