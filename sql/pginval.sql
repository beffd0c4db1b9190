-- pginval: the SQL side of pginval.
--
-- Installs (or upgrades in place) the schema "pginval": triggers that
-- describe every committed change to a watched table as a small JSON
-- document, sent with NOTIFY or queued in an outbox table, which the
-- pginval daemon turns into Redis cache invalidations.
--
--     psql -v ON_ERROR_STOP=1 -f sql/pginval.sql
--
-- Running it again is harmless: every object is created with IF NOT EXISTS
-- or CREATE OR REPLACE, and the whole file is one transaction, so a failed
-- run leaves the previous installation untouched. Run over an older
-- installation, it also brings the triggers of the watched tables to the
-- current argument layout. Remove everything with sql/uninstall.sql.
--
-- Requires PostgreSQL 14 or later (pg_current_xact_id, CREATE OR REPLACE
-- TRIGGER).
--
-- API (version 1):
--
--     SELECT pginval.watch('public.users');                 -- key = primary key
--     SELECT pginval.watch('public.users', '{id,email}');   -- explicit columns
--     SELECT pginval.watch('public.users', NULL, 'mychan'); -- another channel
--     SELECT pginval.watch('public.users', NULL, 'pginval', 'durable');
--     SELECT pginval.unwatch('public.users');
--     SELECT * FROM pginval.watched_tables;
--
-- Delivery modes, the fourth argument of watch():
--
--   notify   (the default) The payload is sent with NOTIFY on the channel.
--            At most once: what is sent while the daemon is disconnected
--            is lost, and a payload too large for NOTIFY is cut down to
--            {"big":true} (see below).
--   durable  The payload is inserted into pginval.outbox by the writing
--            transaction, so it commits or rolls back with the change;
--            the daemon deletes rows once it has delivered them (at least
--            once). As a wake-up, NOTIFY also sends the fixed payload
--            "wake" on the channel. PostgreSQL folds identical
--            notifications of one transaction into one, so that is one
--            wake-up per transaction and channel, however many rows it
--            changed. No size limit applies: payloads are never "big".
--   poll     As durable, without the wake-up. Nothing is NOTIFYed, so the
--            writer's commit does not take the cluster-wide lock that
--            serialises the commits of all NOTIFYing transactions; the
--            daemon finds the rows by polling.
--
-- The daemon drains a channel's outbox rows in batches, in a role that
-- has SELECT, UPDATE and DELETE on pginval.outbox:
--
--     BEGIN;
--     SELECT id, payload FROM pginval.outbox
--      WHERE channel = $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED;
--     -- ... publish the payloads ...
--     DELETE FROM pginval.outbox WHERE id = ANY($1::bigint[]);
--     COMMIT;
--
-- Payload sent on the channel (notify) or stored in pginval.outbox.payload
-- (durable, poll), one per changed row, keys in this order:
--
--     {"v":1,"t":"public.users","op":"update","ts":1764240000123456,
--      "x":1234,"o":{"id":"42","email":"a@x.io"},"n":{"id":"42","email":"b@x.io"}}
--
--   v    payload format version.
--   t    schema.table, unquoted.
--   op   insert | update | delete | truncate.
--   ts   microseconds since the Unix epoch (clock_timestamp()).
--   x    the writing transaction's id (pg_current_xact_id()).
--   o    watched columns of the old row (update, delete).
--   n    watched columns of the new row (insert, update).
--
-- Column values are always JSON strings (or null for SQL NULL) holding the
-- text that to_jsonb() gives the value: the usual text output for text,
-- integer, numeric, uuid and boolean types; date/time types come in ISO 8601
-- form ("2024-01-02T03:04:05+00:00"), arrays and composites as JSON. A
-- watched column that no longer exists (dropped or renamed after watch())
-- is left out of "o"/"n" instead of being sent as null.
--
-- In notify mode, when a payload would reach NOTIFY's 8000-byte limit, the
-- row images are left out and {"big":true} is sent in their place: the
-- consumer must then treat the whole table as changed. A truncate carries
-- no images either.

BEGIN;

-- "schema already exists, skipping" and the like are noise on upgrade.
SET LOCAL client_min_messages = warning;

CREATE SCHEMA IF NOT EXISTS pginval;

COMMENT ON SCHEMA pginval IS
    'pginval: cache invalidation triggers (NOTIFY or outbox table)';

-- The triggers run as whoever writes to a watched table, and in durable
-- and poll modes they insert into pginval.outbox: every role must be able
-- to reach that table, or its writes would fail. This trusts no one more
-- than NOTIFY already does, which any role may send on any channel. Only
-- INSERT is granted (below): the payloads hold key values, so reading the
-- outbox is left to the daemon's role.
GRANT USAGE ON SCHEMA pginval TO PUBLIC;

-- The version of this SQL API and of the payload format it sends; the
-- daemon checks it at startup to refuse an installation it does not speak.
CREATE OR REPLACE FUNCTION pginval.version()
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT '1'::text $$;

-- One row per watched table. regclass (not a name) so that renaming a table
-- or its schema keeps it watched; pg_upgrade preserves table OIDs, so this
-- survives major upgrades too. A dropped table leaves its row behind (no
-- event trigger is installed to catch it): watched_tables hides such rows
-- and watch()/unwatch() purge them.
CREATE TABLE IF NOT EXISTS pginval.watched (
    relid      regclass    PRIMARY KEY,
    columns    text[]      NOT NULL,
    channel    text        NOT NULL,
    watched_at timestamptz NOT NULL DEFAULT now()
);

-- Added after the first release; added here rather than in CREATE TABLE
-- so that new and upgraded installations get the same column order. A
-- column with a constant default is a catalog-only change: no rewrite.
ALTER TABLE pginval.watched
    ADD COLUMN IF NOT EXISTS mode text NOT NULL DEFAULT 'notify';

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                    WHERE conrelid = 'pginval.watched'::pg_catalog.regclass
                      AND conname = 'watched_mode_check') THEN
        ALTER TABLE pginval.watched ADD CONSTRAINT watched_mode_check
            CHECK (mode IN ('notify', 'durable', 'poll'));
    END IF;
END;
$$;

COMMENT ON TABLE pginval.watched IS
    'Tables watched by pginval; maintained by pginval.watch()/unwatch()';

-- The table name is spelled exactly as the payload's "t" so the daemon can
-- match them as strings. The trigger check guards against a stale row whose
-- OID was reused by an unrelated, unwatched table. New columns go at the
-- end: CREATE OR REPLACE VIEW can only append.
CREATE OR REPLACE VIEW pginval.watched_tables AS
SELECT n.nspname::text || '.' || c.relname::text AS table_name,
       w.columns,
       w.channel,
       w.watched_at,
       w.mode
  FROM pginval.watched w
  JOIN pg_catalog.pg_class c ON c.oid = w.relid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE EXISTS (SELECT 1
                 FROM pg_catalog.pg_trigger tg
                WHERE tg.tgrelid = c.oid
                  AND tg.tgname = 'pginval_ins_del');

-- Payloads of tables watched in durable or poll mode, queued by the writing
-- transaction and deleted by the daemon once delivered. Not UNLOGGED: the
-- point of the outbox is that a committed change survives a crash.
--
-- id orders a channel's rows only roughly: ids are taken before commit, so
-- a row may become visible after rows with higher ids. Two changes of the
-- same row do get ids in commit order, as the second writer waits for the
-- first one's row lock before its trigger runs. The daemon deletes what it
-- has delivered rather than remembering the last id it saw, so a row that
-- commits late is picked up by a later drain.
CREATE TABLE IF NOT EXISTS pginval.outbox (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel    text        NOT NULL,
    payload    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- For the drain's "WHERE channel = $1 ORDER BY id LIMIT $2": a scan of
-- this index returns the channel's rows already in id order and stops once
-- it has locked $2 of them, with no sort, whatever the backlog and however
-- many channels share the table. With the primary key alone, the scan
-- would step over every other channel's rows. The primary key serves the
-- DELETE ... WHERE id = ANY($1).
CREATE INDEX IF NOT EXISTS outbox_channel_id_idx
    ON pginval.outbox (channel, id);

-- A queue table: every row is inserted once and deleted soon after, so
-- most of what the table holds is dead tuples waiting for vacuum, in the
-- heap and in both indexes, and the drain's index scan has to step over
-- them. The default trigger, a fraction (20%) of the live rows, follows a
-- row count that is near zero most of the time and huge after a backlog;
-- a fixed threshold vacuums after every few thousand delivered rows
-- instead, which keeps the table and its indexes a few pages long. The
-- same goes for ANALYZE, so that the planner's row estimates follow the
-- backlog. The fillfactor stays at 100: a lower one reserves room for HOT
-- updates, and these rows are never updated. Set with ALTER TABLE so that
-- re-running this file brings an existing outbox to these values too.
ALTER TABLE pginval.outbox SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 2000,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 2000
);

GRANT INSERT ON pginval.outbox TO PUBLIC;

COMMENT ON TABLE pginval.outbox IS
    'Payloads of durable and poll mode tables, waiting for the pginval daemon';

-- Row trigger. TG_ARGV[0] is the channel, TG_ARGV[1] the mode (notify,
-- durable or poll), TG_ARGV[2..] the watched columns; only
-- pginval._install_triggers() writes them.
--
-- This runs inside every write to a watched table, so it is kept cheap: the
-- JSON is put together by concatenation (json_build_object costs more), each
-- row image is converted with to_jsonb() once, and there is no exception
-- block (each one would start a subtransaction). It must also never make
-- the writer's transaction fail, hence the fallback below NOTIFY's payload
-- limit. No SET search_path on the function: a per-call GUC change would
-- cost more than the whole body; only built-ins and the schema-qualified
-- outbox are used, and pg_catalog comes first in any search_path that does
-- not name it explicitly.
CREATE OR REPLACE FUNCTION pginval.on_row()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    head    text;
    old_img jsonb;   -- stays NULL on insert, so "old_img ? col" is not true
    new_img jsonb;   -- stays NULL on delete
    o       text := '';
    n       text := '';
    col     text;
    key     text;
    payload text;
BEGIN
    head := '{"v":1,"t":'
         || to_json(TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME)::text
         || ',"op":"' || lower(TG_OP)
         || '","ts":'
         || (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
         || ',"x":' || pg_current_xact_id()::text;

    IF TG_OP <> 'INSERT' THEN
        old_img := to_jsonb(OLD);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_img := to_jsonb(NEW);
    END IF;

    -- ->> yields the value's text (numeric and bigint stay exact, unlike a
    -- JSON number read back by most clients), which is re-quoted as a JSON
    -- string. A column missing from the image is skipped rather than sent
    -- as null, so the daemon can tell "dropped" from "NULL".
    FOR i IN 2 .. TG_NARGS - 1 LOOP
        col := TG_ARGV[i];
        key := to_json(col)::text || ':';
        IF old_img ? col THEN
            o := o || CASE WHEN o = '' THEN '' ELSE ',' END || key
                   || coalesce(to_json(old_img ->> col)::text, 'null');
        END IF;
        IF new_img ? col THEN
            n := n || CASE WHEN n = '' THEN '' ELSE ',' END || key
                   || coalesce(to_json(new_img ->> col)::text, 'null');
        END IF;
    END LOOP;

    payload := head;
    IF TG_OP <> 'INSERT' THEN
        payload := payload || ',"o":{' || o || '}';
    END IF;
    IF TG_OP <> 'DELETE' THEN
        payload := payload || ',"n":{' || n || '}';
    END IF;
    payload := payload || '}';

    IF TG_ARGV[1] = 'notify' THEN
        -- NOTIFY raises an error for a payload of 8000 bytes or more, which
        -- would abort the writer's transaction. Fall back to invalidating
        -- the whole table instead.
        IF octet_length(payload) >= 8000 THEN
            payload := head || ',"big":true}';
        END IF;
        PERFORM pg_notify(TG_ARGV[0], payload);
    ELSE
        INSERT INTO pginval.outbox (channel, payload)
        VALUES (TG_ARGV[0], payload);
        -- Always the same payload, so PostgreSQL sends it once per
        -- transaction.
        IF TG_ARGV[1] = 'durable' THEN
            PERFORM pg_notify(TG_ARGV[0], 'wake');
        END IF;
    END IF;
    RETURN NULL;
END;
$$;

-- Statement trigger for TRUNCATE: there are no rows to describe, the
-- consumer drops everything it holds for the table. TG_ARGV[0] is the
-- channel, TG_ARGV[1] the mode.
CREATE OR REPLACE FUNCTION pginval.on_truncate()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    payload text;
BEGIN
    payload := '{"v":1,"t":'
        || to_json(TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME)::text
        || ',"op":"truncate","ts":'
        || (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
        || ',"x":' || pg_current_xact_id()::text || '}';
    IF TG_ARGV[1] = 'notify' THEN
        PERFORM pg_notify(TG_ARGV[0], payload);
    ELSE
        INSERT INTO pginval.outbox (channel, payload)
        VALUES (TG_ARGV[0], payload);
        IF TG_ARGV[1] = 'durable' THEN
            PERFORM pg_notify(TG_ARGV[0], 'wake');
        END IF;
    END IF;
    RETURN NULL;
END;
$$;

-- Internal: create, or replace, the three triggers of a table, with the
-- arguments taken as they are (watch() validates them first). Also used at
-- the end of this file to rewrite the triggers of an older installation,
-- whose registry may name columns dropped since.
CREATE OR REPLACE FUNCTION pginval._install_triggers(
    relid   regclass,
    columns text[],
    channel text,
    mode    text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target text;
    args   text;
BEGIN
    SELECT format('%I.%I', n.nspname, c.relname)
      INTO STRICT target
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = relid;

    SELECT string_agg(format('%L', a), ', ' ORDER BY ord)
      INTO args
      FROM unnest(ARRAY[channel, mode] || columns) WITH ORDINALITY
           AS u(a, ord);

    -- CREATE OR REPLACE TRIGGER takes a SHARE ROW EXCLUSIVE lock, where
    -- DROP TRIGGER would take ACCESS EXCLUSIVE and block readers of a busy
    -- table while re-watching it.
    EXECUTE format(
        'CREATE OR REPLACE TRIGGER pginval_ins_del'
        ' AFTER INSERT OR DELETE ON %s'
        ' FOR EACH ROW EXECUTE FUNCTION pginval.on_row(%s)',
        target, args);

    -- Binary image comparison: "UPDATE t SET x = x" sends nothing, yet any
    -- real change, to any column, does, whatever the column types. It works
    -- for json, which has no equality operator: with OLD.* IS DISTINCT FROM
    -- NEW.* every UPDATE of a table with a json column would fail. And
    -- 1.0 -> 1.00 counts as a change, as the text differs. The whole-row
    -- reference also puts no dependency on single columns, so a watched
    -- column can still be dropped.
    EXECUTE format(
        'CREATE OR REPLACE TRIGGER pginval_upd'
        ' AFTER UPDATE ON %s'
        ' FOR EACH ROW WHEN (NOT (OLD *= NEW))'
        ' EXECUTE FUNCTION pginval.on_row(%s)',
        target, args);

    EXECUTE format(
        'CREATE OR REPLACE TRIGGER pginval_trunc'
        ' AFTER TRUNCATE ON %s'
        ' FOR EACH STATEMENT EXECUTE FUNCTION pginval.on_truncate(%L, %L)',
        target, channel, mode);
END;
$$;

-- The mode parameter changed watch()'s signature. CREATE OR REPLACE would
-- add the new function beside the old one, and every call leaving out the
-- trailing arguments would then be ambiguous.
DROP FUNCTION IF EXISTS pginval.watch(regclass, text[], text);

-- Start watching a table, or change how it is watched. Calling it again
-- replaces the triggers and the registry row, so it doubles as "alter".
-- Rows already in the outbox stay there when a table leaves durable or
-- poll mode.
--
-- Columns are given by exact attribute name (as in pg_attribute, so
-- "UserId" is not userid). The UPDATE trigger fires on any real change to
-- the row, watched column or not: the consumer may cache whole rows.
CREATE OR REPLACE FUNCTION pginval.watch(
    tbl     regclass,
    columns text[] DEFAULT NULL,
    channel text   DEFAULT 'pginval',
    mode    text   DEFAULT 'notify')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kind    char;
    nsp     name;
    col     text;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'pginval.watch: table must not be NULL';
    END IF;

    SELECT c.relkind, n.nspname
      INTO kind, nsp
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = tbl;
    -- Partitioned tables are refused: their row triggers run on the
    -- partitions, so "t" would name a partition, and TRUNCATE of a single
    -- partition would go unnoticed. Watching each partition works.
    IF kind = 'p' THEN
        RAISE EXCEPTION 'pginval.watch: % is a partitioned table', tbl
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'Watch each of its partitions instead.';
    ELSIF kind IS DISTINCT FROM 'r' THEN
        RAISE EXCEPTION 'pginval.watch: % is not a table', tbl
            USING ERRCODE = 'wrong_object_type';
    END IF;
    -- The outbox watched in durable mode would have every insert into it
    -- insert another row, until the writer ran out of stack.
    IF nsp = 'pginval' THEN
        RAISE EXCEPTION 'pginval.watch: % is a table of pginval itself', tbl
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- pg_notify() rejects an empty channel and NOTIFY one of 64 bytes or
    -- more; catching that here keeps it from failing every later write.
    -- The rule holds in poll mode too, which sends nothing, so that the
    -- table can be switched to another mode on the same channel later.
    IF channel IS NULL OR channel = '' OR octet_length(channel) >= 64 THEN
        RAISE EXCEPTION 'pginval.watch: invalid channel name %',
            coalesce(quote_literal(channel), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A channel name must be 1 to 63 bytes long.';
    END IF;

    IF mode IS NULL OR mode NOT IN ('notify', 'durable', 'poll') THEN
        RAISE EXCEPTION 'pginval.watch: invalid mode %',
            coalesce(quote_literal(mode), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The mode must be one of notify, durable, poll.';
    END IF;

    IF columns IS NULL THEN
        -- Primary key columns in key order; INCLUDE columns are not keys.
        SELECT array_agg(a.attname::text ORDER BY k.ord)
          INTO columns
          FROM pg_index i
         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY
               AS k(attnum, ord)
          JOIN pg_attribute a
            ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = tbl
           AND i.indisprimary
           AND k.ord <= i.indnkeyatts;
        IF columns IS NULL THEN
            RAISE EXCEPTION 'pginval.watch: table % has no primary key', tbl
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Pass the columns that identify a row, e.g. '
                          || format('SELECT pginval.watch(%L, ''{col1,col2}'')',
                                    tbl::text);
        END IF;
    END IF;

    IF cardinality(columns) = 0 THEN
        RAISE EXCEPTION 'pginval.watch: no columns given for table %', tbl
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL to use the primary key.';
    END IF;

    FOREACH col IN ARRAY columns LOOP
        IF col IS NULL THEN
            RAISE EXCEPTION 'pginval.watch: NULL column name for table %', tbl
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_attribute a
                        WHERE a.attrelid = tbl AND a.attname = col
                          AND a.attnum > 0 AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'pginval.watch: column "%" of table % does not exist',
                col, tbl
                USING ERRCODE = 'undefined_column';
        END IF;
    END LOOP;

    IF cardinality(columns) <> (SELECT count(DISTINCT c) FROM unnest(columns) c)
    THEN
        RAISE EXCEPTION 'pginval.watch: duplicate column in %', columns::text
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    PERFORM pginval._install_triggers(tbl, columns, channel, mode);

    DELETE FROM pginval.watched w
     WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = w.relid);

    INSERT INTO pginval.watched (relid, columns, channel, mode)
    VALUES (tbl, columns, channel, mode)
    ON CONFLICT (relid) DO UPDATE
       SET columns = EXCLUDED.columns,
           channel = EXCLUDED.channel,
           mode = EXCLUDED.mode,
           watched_at = now();
END;
$$;

-- Stop watching a table. Safe to call on a table that is not watched.
CREATE OR REPLACE FUNCTION pginval.unwatch(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target text;
BEGIN
    SELECT format('%I.%I', n.nspname, c.relname)
      INTO target
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = tbl;
    IF target IS NOT NULL THEN
        EXECUTE format('DROP TRIGGER IF EXISTS pginval_ins_del ON %s', target);
        EXECUTE format('DROP TRIGGER IF EXISTS pginval_upd ON %s', target);
        EXECUTE format('DROP TRIGGER IF EXISTS pginval_trunc ON %s', target);
    END IF;
    -- Also purge rows of tables dropped since they were watched.
    DELETE FROM pginval.watched w
     WHERE w.relid = tbl
        OR NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = w.relid);
END;
$$;

-- Upgrade: give the triggers of every watched table (those the view lists)
-- the argument layout the functions above expect; an older installation
-- wrote (channel, columns...), without the mode. A table whose triggers
-- already carry the expected arguments is left alone, so that re-running
-- this file takes no lock on it. pg_trigger.tgargs holds the arguments as
-- NUL-terminated strings in the database encoding.
DO $$
DECLARE
    w record;
BEGIN
    FOR w IN
        SELECT r.relid, r.columns, r.channel, r.mode
          FROM pginval.watched r
         CROSS JOIN LATERAL (
               SELECT pg_catalog.string_agg(b.arg, ''::bytea ORDER BY a.ord)
                          AS row_args,
                      pg_catalog.string_agg(b.arg, ''::bytea ORDER BY a.ord)
                          FILTER (WHERE a.ord <= 2) AS trunc_args
                 FROM pg_catalog.unnest(ARRAY[r.channel, r.mode] || r.columns)
                      WITH ORDINALITY AS a(val, ord),
                      LATERAL (SELECT pg_catalog.convert_to(a.val,
                                          pg_catalog.getdatabaseencoding())
                                      || pg_catalog.decode('00', 'hex'))
                      AS b(arg)) e
         WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                        WHERE t.tgrelid = r.relid
                          AND t.tgname = 'pginval_ins_del')
           AND (SELECT pg_catalog.count(*) FROM pg_catalog.pg_trigger t
                 WHERE t.tgrelid = r.relid
                   AND CASE t.tgname
                       WHEN 'pginval_ins_del' THEN t.tgargs = e.row_args
                       WHEN 'pginval_upd' THEN t.tgargs = e.row_args
                       WHEN 'pginval_trunc' THEN t.tgargs = e.trunc_args
                       END) <> 3
         ORDER BY r.relid::oid
    LOOP
        PERFORM pginval._install_triggers(w.relid, w.columns, w.channel,
                                          w.mode);
    END LOOP;
END;
$$;

COMMIT;
