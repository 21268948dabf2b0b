"""The failures both deployables report alike, classified by `retriable` (stdlib only).

A retriable error means "a dependency is away": back off and retry (the consumer), or answer 503
with `Retry-After` (the bridge). Everything about bad input is a validation error instead
(`schemas.task_start.TaskStartValidationError`), never one of these.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of our operational errors; `retriable` says whether backing off and retrying helps."""

    retriable: bool = False


class BrokerUnavailableError(ServiceError):
    """The Kafka broker could not be reached, or refused a write; `retriable` tells which."""

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


class StorageUnavailableError(ServiceError):
    """The database cannot be reached or failed transiently: retry later."""

    retriable = True
