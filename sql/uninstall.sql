-- pginval: remove the SQL side of pginval.
--
--     psql -v ON_ERROR_STOP=1 -f sql/uninstall.sql
--
-- Unwatches every watched table (dropping its pginval_* triggers), then
-- drops the schema "pginval" with everything in it, the outbox table
-- included: payloads still queued there are discarded. Safe to run when
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

DROP SCHEMA IF EXISTS pginval CASCADE;

COMMIT;
