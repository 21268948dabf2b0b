"""The consumer: the service that owns tasks (validate, assign ids, persist, reply)."""
