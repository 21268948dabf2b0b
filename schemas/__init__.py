"""The wire contract shared by both deployables (consumer and producer_tools).

Imports pydantic, pydantic-settings, orjson and the standard library only.
"""
