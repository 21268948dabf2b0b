"""The Kafka record layout: the CloudEvents 1.0 Kafka binding for task requests and replies.

This is the one place that knows how records are laid out (headers, key, value). Pure functions
on `(key, value, headers)`; no Kafka client here, so both deployables and the tools share it.

- Binary mode: `ce_*` headers carry the attributes; the value is the Task Start Event JSON, exactly
  the HTTP body; `content-type: application/json`.
- Structured mode: `content-type: application/cloudevents+json`; the value is the whole CloudEvent
  as JSON with the event under `data`, so one JSON line is a self-contained, replayable record.
- Key: the service id in decimal ASCII (per-service ordering).
- Identity: `source` + `id`, the idempotency key. Extensions: `serviceid` (the 64-bit service id),
  `replyto` (topic for the reply), `correlationid` (echoed on the reply).

Its parts, every public name of which is imported from here (`from schemas import wire`):
`_names` (types, content types, header names, default topics, the record key), `_requests`
(reading a request record of either mode, writing one, turning one into a structured event for
export) and `_replies` (reply records and the headers of dead letters).
"""

from schemas.wire._names import *  # noqa: F403 - the package's public face: each part's __all__
from schemas.wire._replies import *  # noqa: F403
from schemas.wire._requests import *  # noqa: F403
