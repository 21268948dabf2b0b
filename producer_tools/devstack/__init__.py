"""The dev stack behind `ucs-tasks dev` and the tests: embedded broker and PostgreSQL, supervised.

`embedded`: the `tansu` broker and a PostgreSQL from PyPI wheels, as child processes;
`stack`: migrate, create topics, run the consumer and the bridge, stop everything on Ctrl-C.
"""
