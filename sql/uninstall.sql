-- pginval: remove the SQL side of pginval.
--
--     psql -v ON_ERROR_STOP=1 -f sql/uninstall.sql
--
-- Unwatches every watched table (dropping its pginval_* triggers, and those
-- of the partitions of a watched partitioned table; in wal mode, putting
-- back the replica identities that watch() changed), drops the
-- publications that watch() created for wal mode, then drops the event
-- trigger pginval_partitions and the schema "pginval" with everything in
-- it, the outbox table included: payloads still queued there are
-- discarded, and the role pginval_trigger unless another database still
-- uses it. Safe to run when
-- pginval is not installed, or twice. Stop the daemon first: it would
-- otherwise keep waiting for notifications that no longer come.

BEGIN;

SET LOCAL client_min_messages = warning;

-- Unwatch explicitly rather than relying on DROP SCHEMA ... CASCADE alone,
-- which would also drop the triggers (they depend on the trigger functions)
-- but leaves no trace of which tables it touched. The body is only
-- planned when it runs, so it is fine when nothing is installed.
DO $$
BEGIN
    IF to_regprocedure('pginval.unwatch(regclass)') IS NOT NULL
       AND to_regclass('pginval.watched') IS NOT NULL THEN
        PERFORM pginval.unwatch(w.relid)
           FROM pginval.watched w
          WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                         WHERE c.oid = w.relid);
    END IF;
END;
$$;

-- The publications of wal mode, which unwatch() leaves (a daemon may be
-- streaming one): those that watch() created carry its comment. A
-- replication slot that still reads one fails from then on: drop it too
-- (SELECT pg_drop_replication_slot('...')), once the daemon is stopped.
DO $$
DECLARE
    pub name;
BEGIN
    FOR pub IN
        SELECT p.pubname FROM pg_catalog.pg_publication p
         WHERE pg_catalog.obj_description(p.oid, 'pg_publication')
               LIKE 'pginval: %'
         ORDER BY 1
    LOOP
        EXECUTE pg_catalog.format('DROP PUBLICATION %I', pub);
    END LOOP;
END;
$$;

-- The event trigger that covers new partitions goes with its function,
-- pginval._on_ddl(); dropped first, by name, so that no DDL between here
-- and the end of the schema runs it.
DROP EVENT TRIGGER IF EXISTS pginval_partitions;
DROP SCHEMA IF EXISTS pginval CASCADE;

-- pginval_trigger owned the trigger functions. Roles belong to the whole
-- cluster: it stays if pginval is installed in another database too.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_roles
                WHERE rolname = 'pginval_trigger') THEN
        DROP ROLE pginval_trigger;
    END IF;
EXCEPTION WHEN dependent_objects_still_exist THEN
    RAISE NOTICE 'pginval: role pginval_trigger kept: it is used in another database';
END;
$$;

COMMIT;
