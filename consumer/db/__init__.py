"""PostgreSQL adapters: tables, the batched repository, the unit of work, reads, migrations."""
