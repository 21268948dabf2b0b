-- Least-privilege database roles of ucs-tasks: one per process, each with only what it uses.
--
--   operator: owns the tables; runs the migrations (`ucs-tasks db upgrade`) and
--             `ucs-tasks rebuild` (locks the tasks table, restores tasks with their own ids,
--             deletes superseded ones, moves the id sequence);
--   consumer: stores tasks and rejections and reads them back (`ucs-tasks consume`);
--   bridge:   reads tasks and rejections (`ucs-tasks bridge`, and the tools' reads).
--
-- Run it once, after the first migration, in the tasks database, as a superuser (or as a role
-- that may SET ROLE to the roles it creates: ALTER ... OWNER asks for that):
--
--   psql "$ADMIN_URL" -v operator_role=ucs_tasks_operator -v operator_password='...' \
--        -v consumer_role=ucs_tasks_consumer -v consumer_password='...' \
--        -v bridge_role=ucs_tasks_bridge -v bridge_password='...' -f docs/least-privilege.sql
--
-- then give each process its own UCS_DATABASE_URL (postgresql://ucs_tasks_consumer@db/...).
-- tests/integration/test_least_privilege.py applies this file to a fresh database and shows that
-- each role can do its job and nothing more.

CREATE ROLE :"operator_role" LOGIN PASSWORD :'operator_password'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;
CREATE ROLE :"consumer_role" LOGIN PASSWORD :'consumer_password'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;
CREATE ROLE :"bridge_role" LOGIN PASSWORD :'bridge_password'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;

GRANT CONNECT ON DATABASE :"DBNAME" TO :"operator_role", :"consumer_role", :"bridge_role";

-- The operator owns the tables, so later migrations can change them (the identity's sequence
-- and the indexes follow their table). CREATE on the schema: migrations may add tables.
GRANT USAGE, CREATE ON SCHEMA public TO :"operator_role";
ALTER TABLE tasks OWNER TO :"operator_role";
ALTER TABLE rejected_events OWNER TO :"operator_role";
ALTER TABLE task_changes OWNER TO :"operator_role";
ALTER TABLE alembic_version OWNER TO :"operator_role";
ALTER FUNCTION apply_task_changes(json) OWNER TO :"operator_role";
ALTER FUNCTION apply_task_changes_input(json) OWNER TO :"operator_role";
ALTER FUNCTION json_member_replaced(text, text, text) OWNER TO :"operator_role";
ALTER FUNCTION task_end_text(json, text, json) OWNER TO :"operator_role";
ALTER TYPE task_change_input OWNER TO :"operator_role";

-- The consumer and the bridge check at start-up that the database is migrated.
GRANT USAGE ON SCHEMA public TO :"consumer_role", :"bridge_role";
GRANT SELECT ON TABLE alembic_version TO :"consumer_role", :"bridge_role";

-- The consumer: INSERT ... ON CONFLICT DO NOTHING RETURNING, and reads of what is stored.
-- Every column but the generated ids: no client picks a task id, not even with OVERRIDING
-- SYSTEM VALUE (identity columns draw their values without a sequence privilege). No DELETE
-- or TRUNCATE: rows are never removed.
GRANT SELECT ON TABLE tasks, rejected_events, task_changes TO :"consumer_role";
GRANT INSERT (
    service_id, state_id, task_type_id, task_type_name, session_id, interaction_id,
    application_type_id, application_type_name, application_id, resource_type_id,
    resource_type_name, resource_id, media_type_id, media_type_name, est_duration, started_at,
    attached_data_text, event_source, event_id, source_topic, source_partition, source_offset,
    received_at, tenant, tenant_group
) ON TABLE tasks TO :"consumer_role";
GRANT INSERT (
    event_source, event_id, service_id, status, code, error, source_topic, source_partition,
    source_offset, received_at, task_id
) ON TABLE rejected_events TO :"consumer_role";
-- Completing a task and updating one of its extensions change these columns of its row and no
-- others (apply_task_changes also locks the row with SELECT ... FOR UPDATE, which needs an
-- UPDATE grant); what a task started with is never changed. Each applied change is recorded.
GRANT UPDATE (
    completed_at, duration_ms, disposition_id, disposition_name, disposition_desc,
    completed_text, end_event_source, end_event_id, updated_at, attached_data_text
) ON TABLE tasks TO :"consumer_role";
GRANT INSERT ON TABLE task_changes TO :"consumer_role";

-- The bridge only reads (a task behind a Location, Query Tasks, a request's outcome).
GRANT SELECT ON TABLE tasks, rejected_events, task_changes TO :"bridge_role";
