"""The HTTP bridge: the Context Services task API over Kafka request-reply and the read side.

Served by `ucs-tasks bridge` (and `ucs-tasks dev`). Modules:
- `app`: the FastAPI factory, the lifespan that builds and disposes the Kafka link and DB engine,
  and `serve()`;
- `routes`: the router of the Context Services routes (both path forms) and the health routes;
  `writes`: Start Task, Complete Task, Update Task Extension and their requests' status;
  `reads`: Query Task by ID and Query Tasks; `deps`: what they all depend on (the bridge,
  authentication, the caller's tenant);
- `inputs`, `query_params`: cheap checks of the HTTP request before anything is published or
  asked (no I/O);
- `messages`: the identities of requests (their records: `schemas.requests`), the replies read
  back; `sender`: publish a request and wait for its correlated reply; `answers`: a reply as the
  HTTP answer;
- `kafka`: the request publisher and the reply listener; `pending`: correlation id -> future;
- `representation`: a stored task as the Context Services API renders it; `bodies` and
  `openapi`: the documented HTTP surface;
- `errors`: every error type and its HTTP mapping, written once.
"""
