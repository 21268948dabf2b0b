"""The errors both deployables report alike.

- `EventValidationError`: refused input, with every problem found and the code and status it
  becomes (a rejection on Kafka, a 4xx on HTTP).
- `ServiceError` and its kinds: a dependency (broker, database) is away or refused, classified by
  `retriable`: back off and retry (the consumer), or answer 503 with `Retry-After` (the bridge).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, ParamSpec, TypeVar

from schemas._json_errors import summarise
from schemas.replies import ErrorBody, ErrorCode, FieldError

MAX_REPORTED_ERRORS: Final = 100
"""At most this many `FieldError`s go into one error body; the message gives the total."""


class EventValidationError(Exception):
    """A request (task start, task end, extension update) refused for bad input.

    It carries the error reply (Kafka) or 4xx response (HTTP) it becomes: `code`, its `status`,
    the per-field `errors` and a one-sentence `message` naming them.
    """

    def __init__(
        self, code: ErrorCode, errors: list[FieldError], message: str | None = None
    ) -> None:
        self.code = code
        self.errors = errors
        self.message = message or summarise("Invalid event", [(e.field, e.problem) for e in errors])
        super().__init__(code, errors, self.message)

    def __str__(self) -> str:
        return self.message

    @property
    def status(self) -> int:
        """The HTTP status for this error."""
        return self.code.http_status

    def body(self) -> ErrorBody:
        """The error body (`message`, `exception`, `errors`) for the reply or HTTP response."""
        return ErrorBody(message=self.message, errors=self.errors)


def whole_body(code: ErrorCode, message: str) -> EventValidationError:
    """An error about the request as a whole (field `''`), e.g. malformed JSON."""
    return EventValidationError(code, [FieldError(field="", problem=message)], message)


def one_field(code: ErrorCode, field: str, problem: str, prefix: str) -> EventValidationError:
    """An error about one named value: `<prefix>: <field> <problem>.`."""
    return EventValidationError(
        code, [FieldError(field=field, problem=problem)], f"{prefix}: {field} {problem}."
    )


P = ParamSpec("P")
T = TypeVar("T")


class Problems:
    """The problems of a request's parts (ids, name, body), checked one after the other."""

    def __init__(self) -> None:
        self.found: list[EventValidationError] = []

    def check(self, parse: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
        """`parse(*args, **kwargs)`, or None with its EventValidationError kept."""
        try:
            return parse(*args, **kwargs)
        except EventValidationError as exc:
            self.keep(exc)
            return None

    def keep(self, problem: EventValidationError) -> None:
        """Keep `problem` (caught by the caller) without its traceback: a traceback holds the
        caller's frame, which holds this collector, a cycle that would keep the whole body
        alive until a full garbage collection."""
        self.found.append(problem.with_traceback(None))

    @staticmethod
    def kept(problems: Problems | None, problem: EventValidationError) -> Problems:
        """`problems` with `problem` kept; made now when None (for a caller that makes its
        collector at the first problem, so that a valid request makes none)."""
        problems = problems if problems is not None else Problems()
        problems.keep(problem)
        return problems

    def raise_any(self) -> None:
        """Raise every problem found as one error (see `merged`), if there is any."""
        if not self.found:
            return
        error = merged(self.found)
        self.found = []  # no cycle through this collector once the error holds a traceback
        try:
            raise error
        finally:
            del error  # nor through this frame's local


def merged(problems: Sequence[EventValidationError]) -> EventValidationError:
    """One error holding all of `problems`: the highest status first (413 before 400).

    Its code is that of the first one after sorting; messages are joined in that order and the
    errors are capped at `MAX_REPORTED_ERRORS`.
    """
    if not problems:
        raise ValueError("merged() needs at least one problem")
    if len(problems) == 1:
        return problems[0]
    ordered = sorted(problems, key=lambda p: -p.status)  # stable: request order within a status
    errors = [error for p in ordered for error in p.errors][:MAX_REPORTED_ERRORS]
    return EventValidationError(ordered[0].code, errors, " ".join(p.message for p in ordered))


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
