-- The runtime role of ucs-tasks: what the consumer and the bridge use, and nothing else.
--
-- Run it as the owner of the tables (the role that applied the migrations), in the tasks
-- database, once the migrations are applied:
--
--   psql "$OWNER_URL" -v role=ucs_tasks_app -v password='...' -f docs/least-privilege.sql
--
-- then give the consumer and the bridge UCS_DATABASE_URL=postgresql+asyncpg://ucs_tasks_app:...@
-- Migrations (`ucs-tasks db upgrade`) and `ucs-tasks rebuild` (which deletes tasks and moves the
-- id sequence) keep running as the owner. tests/integration/test_least_privilege.py applies this
-- file and runs the consumer and the bridge's reads as the role it creates.

CREATE ROLE :"role" LOGIN PASSWORD :'password'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;

GRANT CONNECT ON DATABASE :"DBNAME" TO :"role";
GRANT USAGE ON SCHEMA public TO :"role";

-- The consumer stores tasks and rejections (INSERT ... ON CONFLICT DO NOTHING RETURNING) and
-- reads them back; the bridge reads both. No UPDATE, DELETE or TRUNCATE: rows are never changed.
GRANT SELECT, INSERT ON TABLE tasks, rejected_events TO :"role";

-- The task id identity's sequence: USAGE allows nextval (no setval: ids never go back).
-- (PostgreSQL's identity columns draw their values without this check today; the grant keeps
-- the role working should the ids ever come from an explicit nextval.)
GRANT USAGE ON SEQUENCE tasks_task_id_seq TO :"role";

-- Both processes check at start-up that the database is migrated.
GRANT SELECT ON TABLE alembic_version TO :"role";
