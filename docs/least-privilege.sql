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

-- The consumer stores tasks, rejections and the identities of applied task changes (INSERT ...
-- ON CONFLICT DO NOTHING RETURNING) and reads them back; the bridge reads them. No DELETE or
-- TRUNCATE: rows are never removed.
GRANT SELECT, INSERT ON TABLE tasks, rejected_events, task_changes TO :"role";

-- Completing a task and updating one of its extensions change these columns of its row and no
-- others (apply_task_changes also locks the row with SELECT ... FOR UPDATE, which needs an
-- UPDATE grant); what a task started with is never changed.
GRANT UPDATE (completed_at, duration_ms, disposition_id, disposition_name, disposition_desc,
    completed_text, end_event_source, end_event_id, updated_at, attached_data,
    attached_data_text) ON TABLE tasks TO :"role";

-- The task id identity's sequence: USAGE allows nextval (no setval: ids never go back).
-- (PostgreSQL's identity columns draw their values without this check today; the grant keeps
-- the role working should the ids ever come from an explicit nextval.)
GRANT USAGE ON SEQUENCE tasks_task_id_seq TO :"role";

-- Both processes check at start-up that the database is migrated.
GRANT SELECT ON TABLE alembic_version TO :"role";
