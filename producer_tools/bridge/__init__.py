"""The HTTP bridge: the Context Services `POST .../tasks/start` over Kafka request-reply.

Served by `ucs-tasks bridge` (and `ucs-tasks dev`). Modules:
- `app`: the FastAPI factory, the lifespan that builds and disposes the Kafka link and DB engine,
  and `serve()`;
- `routes`: the HTTP entrypoints (translate, nothing else); `openapi`: their documented responses;
- `inputs`: cheap checks of the HTTP request before anything is published (no I/O);
- `starter`: publish a start request and wait for its correlated reply;
- `kafka`: the request publisher and the reply listener; `pending`: correlation id -> future;
- `store`: the read side (tasks, request status) over `consumer.db.reads`;
- `representation`: a stored task as the Context Services API renders it;
- `errors`: every error type and its HTTP mapping, written once.
"""
