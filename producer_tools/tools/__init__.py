"""The operator tools behind `ucs-tasks`: send, produce, replay, export, tail, rebuild.

Each command's work lives in its own module; `_events` turns input into validated task-start
records, `_sending` publishes them, `_ranges` reads topic ranges, `_progress` reports and exits.
"""
