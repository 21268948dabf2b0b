"""What both processes share for being watched: logs, trace context, the health/metrics server.

Imports nothing of ours: the consumer and the bridge each define their own metrics and wire these
pieces in their composition roots.
"""
