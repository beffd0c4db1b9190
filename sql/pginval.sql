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
-- current layout (statement triggers, see _triggers() below). Remove
-- everything with sql/uninstall.sql.
--
-- Requires PostgreSQL 14 or later (pg_current_xact_id, CREATE OR REPLACE
-- TRIGGER).
--
-- API (version 3):
--
--     SELECT pginval.watch('public.users');                 -- key = primary key
--     SELECT pginval.watch('public.users', '{id,email}');   -- explicit columns
--     SELECT pginval.watch('public.users', NULL, 'mychan'); -- another channel
--     SELECT pginval.watch('public.users', NULL, 'pginval', 'durable');
--     SELECT pginval.watch('public.users', NULL, 'pginval', 'wal');
--     SELECT pginval.unwatch('public.users');
--     SELECT * FROM pginval.watched_tables;
--     SELECT pginval.watch('public.events');  -- a partitioned table: all of it
--     SELECT * FROM pginval.uncovered_partitions;
--     SELECT pginval.publication('pginval');  -- wal mode: the publication
--     SELECT * FROM pginval.wal_columns('pginval');  -- what the daemon reads
--
-- A partitioned table is watched as the root of its tree: every partition,
-- at any depth, created or attached before or after watch(), is covered,
-- and its changes are sent under the root's name ("t"), whether the
-- statement named the root or the partition. Partitions created or
-- attached later are covered by the event trigger pginval_partitions,
-- which only a superuser can install (see below); uncovered_partitions
-- lists those left without triggers. A partition can instead be watched on
-- its own, under its own name, while its root is not watched.
--
-- Delivery modes, the fourth argument of watch():
--
--   notify   (the default) The payloads are sent with NOTIFY on the
--            channel. At most once: what is sent while the daemon is
--            disconnected is lost, and a row too large for NOTIFY is cut
--            down to {"big":true} (see below).
--   durable  The payloads are inserted into pginval.outbox by the writing
--            transaction, so they commit or roll back with the change;
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
--   wal      No trigger at all: the table joins the channel's publication,
--            pginval.publication(channel), which watch() creates when
--            missing, and the daemon reads its changes from the WAL through
--            a logical replication slot of its own (the pgoutput plugin).
--            Nothing is lost and writers pay nothing but the WAL that the
--            old values need: watch() gives the table a REPLICA IDENTITY
--            that logs the watched columns' old values (see
--            _wal_identity() below), and unwatch() puts back the one it
--            found. Needs wal_level = logical, the table's ownership, and
--            CREATE on the database (or ownership of the publication).
--            Column types whose text the daemon could not render as the
--            triggers do are refused (see _wal_class()). A partitioned
--            table's changes come under the root's name, as in the other
--            modes; a TRUNCATE aimed at a partition, which PostgreSQL does
--            not publish as the root's, is written into the WAL by a
--            trigger (see on_truncate()). The payload format below does
--            not apply otherwise: the daemon builds the same events from
--            the WAL.
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
-- Payloads, sent on the channel (notify) or stored in
-- pginval.outbox.payload (durable, poll), keys in this order. A statement
-- that changed one row sends one payload:
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
-- A statement that changed several rows describes them in as few payloads
-- as the limits below allow, each with a "rows" array in place of "o" and
-- "n", one element per row, with that row's "o" and "n" (only "n" for an
-- insert, only "o" for a delete):
--
--     {"v":1,"t":"public.users","op":"update","ts":1764240000123456,
--      "x":1234,"rows":[{"o":{"id":"42","email":"a"},"n":{"id":"42","email":"b"}},
--                       {"o":{"id":"43","email":"c"},"n":{"id":"43","email":"d"}}]}
--
-- "rows" always holds two rows or more: a payload left with a single row
-- takes the one-row form. The payloads of one statement share "ts" and "x"
-- and are sent together, and each describes rows in the order in which the
-- statement changed them; the few that do not share a payload (below) come
-- after the others. Limits, in bytes of the database encoding:
--
--   notify         a payload stays under NOTIFY's 8000 bytes (7999 at
--                  most) and holds 500 rows at most. A row whose
--                  description ({"o":..,"n":..}) passes 1023 bytes gets a
--                  payload of its own, in the one-row form.
--   durable, poll  an outbox row holds 64 kB (65536 bytes) and 500 rows at
--                  most; a row whose description passes 8191 bytes gets an
--                  outbox row of its own, whatever its size.
--
-- An UPDATE describes only the rows it really changed, to any column,
-- watched or not (see the comparison in _triggers()); a statement that
-- changed nothing sends nothing.
--
-- Column values are always JSON strings (or null for SQL NULL) holding the
-- text that to_jsonb() gives the value: the usual text output for text,
-- integer, numeric, uuid and boolean types; date/time types come in ISO 8601
-- form ("2024-01-02T03:04:05+00:00"), arrays and composites as JSON. A
-- watched column that no longer exists (dropped or renamed after watch())
-- is left out of "o"/"n" instead of being sent as null.
--
-- In notify mode, a row whose one-row payload would reach NOTIFY's
-- 8000-byte limit is left out, and the statement sends, once, a payload
-- with {"big":true} in place of row images:
--
--     {"v":1,"t":"public.users","op":"update","ts":1764240000123456,"x":1234,"big":true}
--
-- The consumer must then treat the whole table as changed. A truncate
-- carries no images either. A TRUNCATE in a watched partition tree, of
-- the root or of any partition, sends one truncate of the root per
-- transaction.

BEGIN;

-- "schema already exists, skipping" and the like are noise on upgrade.
SET LOCAL client_min_messages = warning;
-- Whatever the installing session's search_path holds, every name below
-- resolves in pg_catalog or is qualified with pginval.
SET LOCAL search_path = pg_catalog, pg_temp;

CREATE SCHEMA IF NOT EXISTS pginval;

COMMENT ON SCHEMA pginval IS
    'pginval: cache invalidation triggers (NOTIFY or outbox table)';

-- Who may produce an event. Any role that can connect may NOTIFY any
-- channel, so the daemon acts only on payloads that carry an HMAC under a
-- key that only two roles can read: the daemon's (GRANT SELECT ON
-- pginval.secret TO it) and pginval_trigger, a role that cannot log in
-- and owns the trigger functions, which run as their owner (SECURITY
-- DEFINER). A trigger function cannot be called directly, and attaching
-- one with CREATE TRIGGER needs EXECUTE on it, which PUBLIC does not have:
-- so only a pginval trigger on a table, installed by watch(), speaks for
-- that table. Only pginval_trigger may insert into the outbox.
--
-- Why a role of its own rather than the installing one (often a
-- superuser): the triggers read row images with to_jsonb(), which calls
-- a cast to json that the owner of a column's type may have defined; that
-- code runs as the trigger's owner. Owned by pginval_trigger, it can do
-- no more than the triggers can.
--
-- USAGE on the schema lets every role read version() and the
-- watched_tables view; the functions that matter are not executable by
-- PUBLIC (below).
GRANT USAGE ON SCHEMA pginval TO PUBLIC;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pginval_trigger')
    THEN
        IF NOT (SELECT rolsuper OR rolcreaterole FROM pg_roles
                 WHERE rolname = current_user) THEN
            RAISE EXCEPTION 'pginval.sql: role pginval_trigger does not exist, '
                            'and % may not create it', current_user
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'Run pginval.sql as a superuser or a role with '
                          || 'CREATEROLE, or have one run: CREATE ROLE '
                          || 'pginval_trigger NOLOGIN; GRANT pginval_trigger '
                          || format('TO %I;', current_user);
        END IF;
        CREATE ROLE pginval_trigger NOLOGIN;
    END IF;
    -- A CREATEROLE installer that is not a superuser must be a member to
    -- give it the functions (ALTER FUNCTION ... OWNER TO).
    IF NOT pg_has_role(current_user, 'pginval_trigger', 'MEMBER') THEN
        EXECUTE format('GRANT pginval_trigger TO %I', current_user);
    END IF;
END;
$$;
GRANT USAGE ON SCHEMA pginval TO pginval_trigger;

-- The version of this SQL API and of the payload format it sends; the
-- daemon checks it at startup to refuse an installation it does not speak.
--   1  the first release
--   2  payloads end with an authenticator ("m", below)
--   3  wal mode: publication(), wal_columns(), the watched.identities
--      column
CREATE OR REPLACE FUNCTION pginval.version()
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT '3'::text $$;

-- The publication of a channel's tables watched in wal mode: one per
-- channel, so that a daemon streams exactly its channel's tables. A
-- channel name is at most 63 bytes, as is a publication name: a long one
-- is hashed.
CREATE OR REPLACE FUNCTION pginval.publication(channel text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN octet_length('pginval_' || channel) <= 63
                THEN 'pginval_' || channel
                ELSE 'pginval_' || md5(channel) END
$$;

-- A change that watch() made to a table's REPLICA IDENTITY (wal mode),
-- kept in pginval.watched.identities so that unwatch() can put back what
-- it found: rel's identity was "was" ('d' default, 'n' nothing, 'f' full,
-- 'i' using the index was_index) and watch() set "set" (set_index). regclass
-- rather than OIDs, so that a dump and restore keeps them right.
DO $$
BEGIN
    IF to_regtype('pginval.identity_change') IS NULL THEN
        CREATE TYPE pginval.identity_change AS (
            rel       regclass,
            was       "char",
            was_index regclass,
            set       "char",
            set_index regclass);
    END IF;
END;
$$;

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

-- wal mode: the identity changes watch() made (see identity_change).
ALTER TABLE pginval.watched
    ADD COLUMN IF NOT EXISTS identities pginval.identity_change[] NOT NULL
        DEFAULT '{}';

-- An installation before version 3 has the check without 'wal': replaced.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                WHERE conrelid = 'pginval.watched'::pg_catalog.regclass
                  AND conname = 'watched_mode_check'
                  AND pg_catalog.pg_get_constraintdef(oid) NOT LIKE '%''wal''%')
    THEN
        ALTER TABLE pginval.watched DROP CONSTRAINT watched_mode_check;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                    WHERE conrelid = 'pginval.watched'::pg_catalog.regclass
                      AND conname = 'watched_mode_check') THEN
        ALTER TABLE pginval.watched ADD CONSTRAINT watched_mode_check
            CHECK (mode IN ('notify', 'durable', 'poll', 'wal'));
    END IF;
END;
$$;

COMMENT ON TABLE pginval.watched IS
    'Tables watched by pginval; maintained by pginval.watch()/unwatch()';

-- Internal: whether a table watched in wal mode is in its channel's
-- publication, whole (no row filter, no column list) and with every kind
-- of change published; what tells it watched, as triggers do in the other
-- modes. A table published in part is not watched: the daemon resets it
-- rather than miss the changes left out, and check --connect names it.
CREATE OR REPLACE FUNCTION pginval._published(relid oid, channel text)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM pg_publication p
                     JOIN pg_publication_rel r ON r.prpubid = p.oid
                    WHERE p.pubname = pginval.publication($2)
                      AND r.prrelid = $1
                      AND r.prqual IS NULL AND r.prattrs IS NULL
                      AND p.pubinsert AND p.pubupdate AND p.pubdelete
                      AND p.pubtruncate AND p.pubviaroot)
$$;

-- The table name is spelled exactly as the payload's "t" so the daemon can
-- match them as strings. The trigger check (the publication's, in wal
-- mode) guards against a stale row whose OID was reused by an unrelated,
-- unwatched table. New columns go at the end: CREATE OR REPLACE VIEW can
-- only append.
CREATE OR REPLACE VIEW pginval.watched_tables AS
SELECT n.nspname::text || '.' || c.relname::text AS table_name,
       w.columns,
       w.channel,
       w.watched_at,
       w.mode
  FROM pginval.watched w
  JOIN pg_catalog.pg_class c ON c.oid = w.relid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE CASE WHEN w.mode = 'wal'
            THEN pginval._published(c.oid, w.channel)
            ELSE EXISTS (SELECT 1
                           FROM pg_catalog.pg_trigger tg
                          WHERE tg.tgrelid = c.oid
                            AND tg.tgname IN ('pginval_ins',
                                              'pginval_ins_del')) END;

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

-- Installations before version 2 granted INSERT to PUBLIC.
REVOKE INSERT ON pginval.outbox FROM PUBLIC;
GRANT INSERT ON pginval.outbox TO pginval_trigger;

COMMENT ON TABLE pginval.outbox IS
    'Payloads of durable and poll mode tables, waiting for the pginval daemon';

-- The key of the payloads' authenticator: an HMAC-SHA-256 key of 32
-- random bytes, stored as its two padded blocks (ik = key XOR 0x36..,
-- ok = key XOR 0x5c.., 64 bytes each), which is all that HMAC needs. Made
-- once, at the first installation. Readable by pginval_trigger and by the
-- roles it is granted to: the daemon's role needs
--
--     GRANT SELECT ON pginval.secret TO pginval;   -- the daemon's role
CREATE TABLE IF NOT EXISTS pginval.secret (
    id         int         PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    ik         bytea       NOT NULL CHECK (octet_length(ik) = 64),
    ok         bytea       NOT NULL CHECK (octet_length(ok) = 64),
    created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON pginval.secret FROM PUBLIC;
GRANT SELECT ON pginval.secret TO pginval_trigger;

COMMENT ON TABLE pginval.secret IS
    'The key of the HMAC on pginval payloads; keep it from every other role';

-- gen_random_uuid() draws 122 bits from the server's strong random
-- source; three of them, hashed, make the 256-bit key.
DO $$
DECLARE
    k  bytea;
    ik bytea := decode(repeat('36', 64), 'hex');
    ok bytea := decode(repeat('5c', 64), 'hex');
BEGIN
    IF NOT EXISTS (SELECT FROM pginval.secret) THEN
        k := sha256(convert_to(gen_random_uuid()::text
                               || gen_random_uuid()::text
                               || gen_random_uuid()::text, 'UTF8'));
        FOR i IN 0 .. 31 LOOP
            ik := set_byte(ik, i, get_byte(k, i) # 54);
            ok := set_byte(ok, i, get_byte(k, i) # 92);
        END LOOP;
        INSERT INTO pginval.secret (ik, ok) VALUES (ik, ok);
    END IF;
END;
$$;

-- A payload with its authenticator: the closing brace gives way to
--
--     ,"m":"<HMAC-SHA-256 of the payload as it was, in lowercase hex>"}
--
-- computed over the payload's bytes in UTF-8 (the encoding the daemon
-- reads them in). 71 bytes longer. A plain SQL function so that the
-- planner inlines it into its callers, which all run with search_path set
-- to pg_catalog. Without a key (the secret's row deleted), NULL.
CREATE OR REPLACE FUNCTION pginval._signed(payload text, ik bytea, ok bytea)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT left(payload, -1) || ',"m":"'
        || encode(sha256(ok || sha256(ik || convert_to(payload, 'UTF8'))),
                  'hex')
        || '"}'
$$;

-- Row trigger, for the tables watched in the row layout (partitions and
-- inheritance children, see _triggers()). TG_ARGV[0] is the channel,
-- TG_ARGV[1] the mode (notify, durable or poll), TG_ARGV[2..] the watched
-- columns; only pginval._install_triggers() writes them.
--
-- This runs inside every write to a watched table, so it is kept cheap: the
-- JSON is put together by concatenation (json_build_object costs more), each
-- row image is converted with to_jsonb() once, and there is no exception
-- block (each one would start a subtransaction). It must also never make
-- the writer's transaction fail, hence the fallback below NOTIFY's payload
-- limit.
--
-- The trigger functions run as pginval_trigger (SECURITY DEFINER, see the
-- top of this file) with search_path set to pg_catalog: a function,
-- operator or type planted in a schema on the writer's search_path, even
-- one with a more exact signature than pg_catalog's, is never reached.
-- The price, with the key lookup and the signing, is measured by make
-- bench (scenario g) and given in docs/security.md.
--
-- _send_row() builds, signs and sends one row's payload; on_row() and, for
-- a statement that changed a single row, on_statement() call it. It runs
-- in their context (owner, search_path), and PUBLIC may not call it.
CREATE OR REPLACE FUNCTION pginval._send_row(
    channel text, mode text, cols text[], tbl text, op text,
    old_img jsonb,   -- NULL on insert, so "old_img ? col" is not true
    new_img jsonb)   -- NULL on delete
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    head    text;
    o       text := '';
    n       text := '';
    col     text;
    key     text;
    payload text;
    ik      bytea;
    ok      bytea;
BEGIN
    SELECT s.ik, s.ok INTO ik, ok FROM pginval.secret s;
    head := '{"v":1,"t":' || to_json(tbl)::text
         || ',"op":"' || op
         || '","ts":'
         || (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
         || ',"x":' || pg_current_xact_id()::text;

    -- ->> yields the value's text (numeric and bigint stay exact, unlike a
    -- JSON number read back by most clients), which is re-quoted as a JSON
    -- string. A column missing from the image is skipped rather than sent
    -- as null, so the daemon can tell "dropped" from "NULL".
    FOREACH col IN ARRAY cols LOOP
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
    IF op <> 'insert' THEN
        payload := payload || ',"o":{' || o || '}';
    END IF;
    IF op <> 'delete' THEN
        payload := payload || ',"n":{' || n || '}';
    END IF;
    payload := payload || '}';

    IF mode = 'notify' THEN
        -- NOTIFY raises an error for a payload of 8000 bytes or more, which
        -- would abort the writer's transaction. Fall back to invalidating
        -- the whole table instead. The authenticator adds 71 bytes.
        IF octet_length(payload) >= 8000 - 71 THEN
            payload := head || ',"big":true}';
        END IF;
        PERFORM pg_notify(channel,
                          coalesce(pginval._signed(payload, ik, ok), payload));
    ELSE
        INSERT INTO pginval.outbox (channel, payload)
        VALUES (channel, coalesce(pginval._signed(payload, ik, ok), payload));
        -- Always the same payload, so PostgreSQL sends it once per
        -- transaction.
        IF mode = 'durable' THEN
            PERFORM pg_notify(channel, 'wake');
        END IF;
    END IF;
END;
$$;

-- The watched partitioned table whose tree holds relid (relid itself, for
-- the root), and its name as "t" spells it; both NULL when the root of
-- relid's tree is not watched (relid detached since, or the root
-- unwatched). The
-- triggers of a covered partition (see _triggers()) send the root's name,
-- looked up at each statement that changed rows, so that renaming the
-- root or its schema, or a dump and restore, needs no trigger rewritten.
-- A watched root is the top of its tree (watch() refuses the others), and
-- is watched as long as it has pginval_ins.
--
-- plpgsql rather than sql: a SQL function with a SET clause is planned
-- again at every call, which cost a statement on a partition 60% of its
-- throughput; plpgsql keeps the plan for the session.
CREATE OR REPLACE FUNCTION pginval._root(relid oid, OUT root oid,
                                         OUT name text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT c.oid, n.nspname::text || '.' || c.relname::text
      INTO root, name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = pg_partition_root(relid)
       AND c.relkind = 'p'
       -- pginval_trunc alone: a root in wal mode.
       AND EXISTS (SELECT FROM pg_trigger t
                    WHERE t.tgrelid = c.oid
                      AND t.tgname IN ('pginval_ins', 'pginval_trunc'));
END;
$$;

CREATE OR REPLACE FUNCTION pginval.on_row()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pginval._send_row(TG_ARGV[0], TG_ARGV[1], TG_ARGV[2:],
        TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, lower(TG_OP),
        CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
        CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
    RETURN NULL;
END;
$$;

-- Statement trigger, for INSERT, UPDATE and DELETE on a table watched in
-- the statement layout (see _triggers()). Same arguments as on_row(). The
-- rows come from the statement's transition tables: pginval_rows (the new
-- rows of an INSERT, the old rows of a DELETE), or pginval_old and
-- pginval_new (UPDATE).
--
-- A statement that changed one row gets the payload on_row() sends, from
-- the same function, after a first query that reads no more than two rows.
-- Only a statement that changed several rows runs the packing query, which
-- builds every row's description and packs them into as few payloads as
-- the size limits allow. Only search_path is set on every call (see
-- on_row()); the packing sets what else it needs around its query
-- (below), so that a one-row statement does not pay for it.
CREATE OR REPLACE FUNCTION pginval.on_statement()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    several boolean;     -- more than one row
    same    boolean;     -- UPDATE, first pair: old image *= new image
    old_img jsonb;       -- the first row's images, NULL where the op has none
    new_img jsonb;
    head    text;
    payload text;
    -- For several rows: the watched columns that still exist, their JSON
    -- keys ("col":), and the first three of each one by one.
    cols    text[];
    keys    text[];
    c1      text;
    c2      text;
    c3      text;
    k1      text;
    k2      text;
    k3      text;
    more    boolean;     -- more than three columns
    pre     text;        -- how a row description starts
    hl      int;         -- octet_length(head)
    lim     int;         -- the largest payload, in bytes
    cap     int;         -- a row description weighing more goes alone
    per     int;         -- bytes of row descriptions per bucket
    unit    int;         -- the least a row counts for
    queued  boolean;
    jit     text;        -- the settings to restore after the packing
    nestloop text;
    ik      bytea;       -- the key (see pginval.secret)
    ok      bytea;
    tbl     text;        -- "t": this table, or the watched root it is in
BEGIN
    -- Where the rows of a transition table are in scope, the queries name
    -- no variable, and refer to whole rows as alias.*: a watched table may
    -- have a column named like a variable or an alias, which would make a
    -- bare name ambiguous, or mean that column. In a select list, where
    -- alias.* would stand for all the columns, alias.*::record keeps the
    -- row whole, and of the table's row type.
    --
    -- The first row (the first old and new rows, paired) and whether there
    -- are more. No row, no payload, and no transaction id assigned.
    IF TG_OP = 'UPDATE' THEN
        SELECT to_jsonb(ot.*), to_jsonb(nt.*), ot.* *= nt.*,
               EXISTS (SELECT FROM pginval_old OFFSET 1)
          INTO old_img, new_img, same, several
          FROM pginval_old ot, pginval_new nt
         LIMIT 1;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT to_jsonb(r.*), EXISTS (SELECT FROM pginval_rows OFFSET 1)
          INTO new_img, several
          FROM pginval_rows r
         LIMIT 1;
    ELSE
        SELECT to_jsonb(r.*), EXISTS (SELECT FROM pginval_rows OFFSET 1)
          INTO old_img, several
          FROM pginval_rows r
         LIMIT 1;
    END IF;
    IF NOT FOUND OR (same AND NOT several) THEN
        RETURN NULL;
    END IF;

    -- A partition covered by its watched root (the pginval_part_ triggers,
    -- see _triggers()) speaks for the root; a statement aimed at the root
    -- fires the root's triggers only, so no row is described twice.
    tbl := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
    IF left(TG_NAME, 13) = 'pginval_part_' THEN
        SELECT coalesce(r.name, tbl) INTO tbl
          FROM pginval._root(TG_RELID) r;
    END IF;

    IF NOT several THEN
        PERFORM pginval._send_row(TG_ARGV[0], TG_ARGV[1], TG_ARGV[2:],
            tbl, lower(TG_OP), old_img, new_img);
        RETURN NULL;
    END IF;

    head := '{"v":1,"t":'
         || to_json(tbl)::text
         || ',"op":"' || lower(TG_OP)
         || '","ts":'
         || (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
         || ',"x":' || pg_current_xact_id()::text;

    -- Several rows. They all have the columns of the first one, so which
    -- watched columns still exist is found out once.
    cols := '{}';
    keys := '{}';
    FOR i IN 2 .. TG_NARGS - 1 LOOP
        IF coalesce(new_img, old_img) ? TG_ARGV[i] THEN
            cols := cols || TG_ARGV[i];
            keys := keys || (to_json(TG_ARGV[i])::text || ':');
        END IF;
    END LOOP;
    c1 := cols[1];
    c2 := cols[2];
    c3 := cols[3];
    k1 := keys[1];
    k2 := keys[2];
    k3 := keys[3];
    more := cardinality(cols) > 3;
    pre := CASE TG_OP WHEN 'INSERT' THEN '{"n":{' ELSE '{"o":{' END;

    -- The packing. Each row description e ({"o":{..},"n":{..}}) weighs w,
    -- its length plus a comma. A description weighing more than cap bytes
    -- goes alone, in the one-row form; in notify mode, one too large for even
    -- that is dropped, and one "big" payload stands for all such rows of
    -- the statement. The others are cut into buckets by the running sum of
    -- their weights: a row belongs to bucket (the sum up to and including
    -- it - 1) / per. All the rows of a bucket but the first end inside its
    -- range of per bytes, and the first weighs at most cap, so a bucket's
    -- weights add up to less than per + cap, and its payload, head +
    -- ',"rows":[' + descriptions + ']}', to at most hl + 9 + per + cap =
    -- lim bytes. Each row counts for at least unit bytes in the running
    -- sum, which bounds a bucket to 500 rows. A bucket of one row takes the
    -- one-row form too (head + ',' + e without its "{"), which is shorter.
    SELECT s.ik, s.ok INTO ik, ok FROM pginval.secret s;
    hl := octet_length(head);
    IF TG_ARGV[1] = 'notify' THEN
        lim := 7999 - 71;  -- pg_notify() refuses 8000 bytes; 71 to sign
        cap := 1024;
    ELSE
        lim := 65536;
        cap := 8192;
    END IF;
    per := lim - hl - 9 - cap;
    unit := ceil(per / 499.0);
    queued := false;

    -- For the packing query only, as transaction-local settings, put back
    -- as they were once it is done (an error rolls them back anyway):
    --   jit             its cost estimates are far too high (nothing is
    --                   known of row_number() = row_number()), which would
    --                   have JIT compile it, for half a second, on every
    --                   statement of more than a few thousand rows.
    --   enable_nestloop its cached plan may have been made for a statement
    --                   of a few rows, where a nested loop is cheapest; with
    --                   a million, that loop would never end. Hash and merge
    --                   joins, sorts and aggregates grow with the data,
    --                   spilling to disk as needed.
    jit := current_setting('jit');
    nestloop := current_setting('enable_nestloop');
    PERFORM set_config('jit', 'off', true), set_config('enable_nestloop', 'off', true);

    IF TG_OP = 'UPDATE' THEN
        -- Both transition tables hold the rows in the order they were
        -- updated, so the n-th old row and the n-th new row are the two
        -- versions of one row.
        FOR payload IN
            SELECT CASE WHEN g.kind = 2 THEN head || ',"big":true}'
                        WHEN g.cnt = 1 THEN head || ',' || substr(g.body, 2)
                        ELSE head || ',"rows":[' || g.body || ']}' END
              FROM (SELECT b.kind, b.bucket, count(*) AS cnt,
                           string_agg(b.e, ',' ORDER BY b.rn) AS body
                      FROM (SELECT d.rn, CASE WHEN d.kind < 2 THEN d.e END AS e,
                                   d.kind,
                                   CASE d.kind
                                   WHEN 0 THEN (sum(greatest(d.w, unit))
                                                    FILTER (WHERE d.kind = 0)
                                                    OVER win - 1) / per
                                   WHEN 1 THEN d.rn
                                   ELSE 0 END AS bucket
                              FROM (SELECT x.rn, x.e, octet_length(x.e) + 1 AS w,
                                           CASE WHEN TG_ARGV[1] = 'notify'
                                                 AND hl + octet_length(x.e) > lim
                                                THEN 2
                                                WHEN octet_length(x.e) + 1 > cap
                                                THEN 1
                                                ELSE 0 END AS kind
                                      FROM (SELECT p.rn,
                                                   '{"o":{' || concat_ws(',',
                                                       k1 || coalesce(to_json(p.oj ->> c1)::text, 'null'),
                                                       k2 || coalesce(to_json(p.oj ->> c2)::text, 'null'),
                                                       k3 || coalesce(to_json(p.oj ->> c3)::text, 'null'),
                                                       CASE WHEN more THEN
                                                           (SELECT string_agg(u.k || coalesce(to_json(p.oj ->> u.c)::text, 'null'), ',' ORDER BY u.n)
                                                              FROM unnest(cols[4:], keys[4:]) WITH ORDINALITY AS u(c, k, n))
                                                       END)
                                                   || '},"n":{' || concat_ws(',',
                                                       k1 || coalesce(to_json(p.nj ->> c1)::text, 'null'),
                                                       k2 || coalesce(to_json(p.nj ->> c2)::text, 'null'),
                                                       k3 || coalesce(to_json(p.nj ->> c3)::text, 'null'),
                                                       CASE WHEN more THEN
                                                           (SELECT string_agg(u.k || coalesce(to_json(p.nj ->> u.c)::text, 'null'), ',' ORDER BY u.n)
                                                              FROM unnest(cols[4:], keys[4:]) WITH ORDINALITY AS u(c, k, n))
                                                       END)
                                                   || '}}' AS e
                                              FROM (SELECT a.rn, to_jsonb(a.r) AS oj,
                                                           to_jsonb(z.r) AS nj
                                                      FROM (SELECT row_number() OVER () AS rn,
                                                                   ot.*::record AS r
                                                              FROM pginval_old ot) a
                                                      JOIN (SELECT row_number() OVER () AS rn,
                                                                   nt.*::record AS r
                                                              FROM pginval_new nt) z
                                                        ON z.rn = a.rn
                                                     WHERE NOT (a.r *= z.r)
                                                     ORDER BY a.rn
                                                    OFFSET 0) p
                                             ORDER BY p.rn
                                            OFFSET 0) x) d
                            WINDOW win AS (ORDER BY d.rn ROWS UNBOUNDED PRECEDING)) b
                     GROUP BY b.kind, b.bucket) g
             ORDER BY g.kind, g.bucket
        LOOP
            payload := coalesce(pginval._signed(payload, ik, ok), payload);
            IF TG_ARGV[1] = 'notify' THEN
                PERFORM pg_notify(TG_ARGV[0], payload);
            ELSE
                INSERT INTO pginval.outbox (channel, payload)
                VALUES (TG_ARGV[0], payload);
                queued := true;
            END IF;
        END LOOP;
    ELSE
        FOR payload IN
            SELECT CASE WHEN g.kind = 2 THEN head || ',"big":true}'
                        WHEN g.cnt = 1 THEN head || ',' || substr(g.body, 2)
                        ELSE head || ',"rows":[' || g.body || ']}' END
              FROM (SELECT b.kind, b.bucket, count(*) AS cnt,
                           string_agg(b.e, ',' ORDER BY b.rn) AS body
                      FROM (SELECT d.rn, CASE WHEN d.kind < 2 THEN d.e END AS e,
                                   d.kind,
                                   CASE d.kind
                                   WHEN 0 THEN (sum(greatest(d.w, unit))
                                                    FILTER (WHERE d.kind = 0)
                                                    OVER win - 1) / per
                                   WHEN 1 THEN d.rn
                                   ELSE 0 END AS bucket
                              FROM (SELECT x.rn, x.e, octet_length(x.e) + 1 AS w,
                                           CASE WHEN TG_ARGV[1] = 'notify'
                                                 AND hl + octet_length(x.e) > lim
                                                THEN 2
                                                WHEN octet_length(x.e) + 1 > cap
                                                THEN 1
                                                ELSE 0 END AS kind
                                      FROM (SELECT row_number() OVER () AS rn,
                                                   pre || concat_ws(',',
                                                       k1 || coalesce(to_json(p.j ->> c1)::text, 'null'),
                                                       k2 || coalesce(to_json(p.j ->> c2)::text, 'null'),
                                                       k3 || coalesce(to_json(p.j ->> c3)::text, 'null'),
                                                       CASE WHEN more THEN
                                                           (SELECT string_agg(u.k || coalesce(to_json(p.j ->> u.c)::text, 'null'), ',' ORDER BY u.n)
                                                              FROM unnest(cols[4:], keys[4:]) WITH ORDINALITY AS u(c, k, n))
                                                       END)
                                                   || '}}' AS e
                                              FROM (SELECT to_jsonb(r.*) AS j
                                                      FROM pginval_rows r
                                                    OFFSET 0) p) x) d
                            -- No ORDER BY: the rows come in the order in
                            -- which row_number() numbered them.
                            WINDOW win AS (ROWS UNBOUNDED PRECEDING)) b
                     GROUP BY b.kind, b.bucket) g
             ORDER BY g.kind, g.bucket
        LOOP
            payload := coalesce(pginval._signed(payload, ik, ok), payload);
            IF TG_ARGV[1] = 'notify' THEN
                PERFORM pg_notify(TG_ARGV[0], payload);
            ELSE
                INSERT INTO pginval.outbox (channel, payload)
                VALUES (TG_ARGV[0], payload);
                queued := true;
            END IF;
        END LOOP;
    END IF;
    PERFORM set_config('jit', jit, true),
            set_config('enable_nestloop', nestloop, true);
    IF queued AND TG_ARGV[1] = 'durable' THEN
        PERFORM pg_notify(TG_ARGV[0], 'wake');
    END IF;
    RETURN NULL;
END;
$$;

-- Statement trigger for TRUNCATE: there are no rows to describe, the
-- consumer drops everything it holds for the table. TG_ARGV[0] is the
-- channel, TG_ARGV[1] the mode.
--
-- TRUNCATE of a partitioned table fires the TRUNCATE triggers of every
-- table of its tree, its own first. In the tree of a watched root, the
-- first one sends the root's truncate and the others of the transaction
-- send nothing: every payload of a transaction arrives after its commit,
-- so one truncate of the root stands for all. The mark is a
-- transaction-local setting whose value is an HMAC of the transaction id
-- and the root's OID: a writer may set the setting, but cannot set it to
-- that value, and so cannot silence a truncate. A savepoint rolled back
-- takes the mark with the payload.
CREATE OR REPLACE FUNCTION pginval.on_truncate()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    payload text;
    ik      bytea;
    ok      bytea;
    tbl     text := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
    root    oid;
    mark    text;
BEGIN
    SELECT s.ik, s.ok INTO ik, ok FROM pginval.secret s;
    SELECT r.root, r.name INTO root, tbl
      FROM pginval._root(TG_RELID) r
     WHERE TG_NAME = 'pginval_part_trunc' OR r.root = TG_RELID;
    IF root IS NULL THEN
        tbl := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
    ELSE
        mark := encode(sha256(ok || sha256(ik || convert_to(
                    pg_current_xact_id()::text || '/' || root::text,
                    'UTF8'))), 'hex');
        IF current_setting('pginval.truncated_' || root, true) = mark THEN
            RETURN NULL;
        END IF;
        IF mark IS NOT NULL THEN
            PERFORM set_config('pginval.truncated_' || root, mark, true);
        END IF;
        -- pgoutput publishes a TRUNCATE of a root in wal mode itself.
        IF TG_ARGV[1] = 'wal' AND root = TG_RELID THEN
            RETURN NULL;
        END IF;
    END IF;
    payload := '{"v":1,"t":'
        || to_json(tbl)::text
        || ',"op":"truncate","ts":'
        || (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
        || ',"x":' || pg_current_xact_id()::text || '}';
    payload := coalesce(pginval._signed(payload, ik, ok), payload);
    IF TG_ARGV[1] = 'notify' THEN
        PERFORM pg_notify(TG_ARGV[0], payload);
    ELSIF TG_ARGV[1] = 'wal' THEN
        -- Into the WAL, with the transaction: the daemon reads it in the
        -- stream of the channel's slot, in commit order.
        PERFORM pg_logical_emit_message(true, 'pginval', payload);
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

-- Internal: the pginval triggers that a table watched with these arguments
-- should have, each with the CREATE OR REPLACE TRIGGER statement that makes
-- it and the pg_trigger values that statement leaves (the upgrade at the end
-- of this file compares them with what is there).
--
-- Two layouts:
--
--   statement  pginval_ins, pginval_upd and pginval_del, statement triggers
--              (on_statement) that see the changed rows in transition
--              tables, so that a statement changing many rows costs a few
--              payloads instead of one NOTIFY or outbox row per row.
--              PostgreSQL takes transition tables on single-event triggers
--              only, hence three triggers.
--   row        pginval_ins_del and pginval_upd, row triggers (on_row), for
--              partitions and inheritance children. A statement on the
--              parent fires the row triggers of the child that holds the
--              row, but only the parent's statement triggers, so statement
--              triggers on the child would miss those changes.
--
-- Both have pginval_trunc. Watching a table and then making it inherit
-- calls for watch() again (or a re-run of this file) to switch it to the
-- row layout; attaching it as a partition does too, where the event
-- trigger (below) is not installed. A statement on an inheritance parent
-- describes the children's rows that it changes as the parent's, as they
-- are part of what a query on the parent returns.
--
-- A watched partitioned table (a root) has the statement layout, which
-- PostgreSQL fires for the statements aimed at the root, whatever
-- partitions they change, with the rows of all of them (an UPDATE that
-- moves a row to another partition included) in its transition tables.
-- Statement triggers are not cloned to partitions, and a statement aimed
-- at a partition fires that partition's own statement triggers only. So
-- every other table of the tree, at any depth, is covered (covered =>
-- true) by a third layout:
--
--   part       pginval_part_ins, pginval_part_upd, pginval_part_del and
--              pginval_part_trunc: the statement layout under other names,
--              with the root's arguments. The trigger functions tell them
--              by name, and send the root's name in "t" (see _root()).
--
-- Each trigger fires only for the statements aimed at its own table, so a
-- change is described once, by the table the statement named.
--
-- tgtype bits: 1 row, 4 insert, 8 delete, 16 update, 32 truncate (AFTER
-- sets none). tgargs: the arguments, each NUL-terminated, in the database
-- encoding.
DROP FUNCTION IF EXISTS pginval._triggers(regclass, text[], text, text);
CREATE OR REPLACE FUNCTION pginval._triggers(
    relid   regclass,
    columns text[],
    channel text,
    mode    text,
    covered boolean DEFAULT false)
RETURNS TABLE (name       name,
               type       int2,
               func       oid,
               args       bytea,
               oldtable   name,
               newtable   name,
               ddl        text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH tbl AS (
        SELECT format('%I.%I', n.nspname, c.relname) AS target,
               CASE WHEN covered THEN 'part'
                    WHEN c.relkind <> 'p' AND (c.relispartition
                         OR EXISTS (SELECT FROM pg_inherits i
                                     WHERE i.inhrelid = c.oid))
                    THEN 'row'
                    ELSE 'statement' END AS layout,
               c.relkind AS kind
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = relid),
    arg AS (
        SELECT string_agg(format('%L', a), ', ' ORDER BY ord) AS list,
               string_agg(convert_to(a, getdatabaseencoding()) || nul,
                          ''::bytea ORDER BY ord) AS bytes,
               string_agg(format('%L', a), ', ' ORDER BY ord)
                   FILTER (WHERE ord <= 2) AS list2,
               string_agg(convert_to(a, getdatabaseencoding()) || nul,
                          ''::bytea ORDER BY ord)
                   FILTER (WHERE ord <= 2) AS bytes2
          FROM unnest(ARRAY[channel, mode] || columns) WITH ORDINALITY
               AS u(a, ord),
               decode('00', 'hex') AS nul)
    SELECT t.name, t.type::int2, t.func::oid, t.args, t.oldtable, t.newtable,
           format(t.ddl, tbl.target, t.list)
      FROM tbl, arg,
           LATERAL (VALUES
        ('statement', 'pginval_ins'::name, 4,
         'pginval.on_statement()'::regprocedure, arg.bytes, arg.list,
         NULL::name, 'pginval_rows'::name,
         'CREATE OR REPLACE TRIGGER pginval_ins AFTER INSERT ON %s'
         ' REFERENCING NEW TABLE AS pginval_rows'
         ' FOR EACH STATEMENT EXECUTE FUNCTION pginval.on_statement(%s)'),
        ('statement', 'pginval_upd', 16,
         'pginval.on_statement()'::regprocedure, arg.bytes, arg.list,
         'pginval_old', 'pginval_new',
         'CREATE OR REPLACE TRIGGER pginval_upd AFTER UPDATE ON %s'
         ' REFERENCING OLD TABLE AS pginval_old NEW TABLE AS pginval_new'
         ' FOR EACH STATEMENT EXECUTE FUNCTION pginval.on_statement(%s)'),
        ('statement', 'pginval_del', 8,
         'pginval.on_statement()'::regprocedure, arg.bytes, arg.list,
         'pginval_rows', NULL,
         'CREATE OR REPLACE TRIGGER pginval_del AFTER DELETE ON %s'
         ' REFERENCING OLD TABLE AS pginval_rows'
         ' FOR EACH STATEMENT EXECUTE FUNCTION pginval.on_statement(%s)'),
        ('row', 'pginval_ins_del', 13,
         'pginval.on_row()'::regprocedure, arg.bytes, arg.list, NULL, NULL,
         'CREATE OR REPLACE TRIGGER pginval_ins_del'
         ' AFTER INSERT OR DELETE ON %s'
         ' FOR EACH ROW EXECUTE FUNCTION pginval.on_row(%s)'),
        -- Binary image comparison: "UPDATE t SET x = x" sends nothing, yet
        -- any real change, to any column, does, whatever the column types.
        -- It works for json, which has no equality operator: with OLD.* IS
        -- DISTINCT FROM NEW.* every UPDATE of a table with a json column
        -- would fail. And 1.0 -> 1.00 counts as a change, as the text
        -- differs. The whole-row reference also puts no dependency on
        -- single columns, so a watched column can still be dropped.
        -- on_statement() compares the same way.
        ('row', 'pginval_upd', 17,
         'pginval.on_row()'::regprocedure, arg.bytes, arg.list, NULL, NULL,
         'CREATE OR REPLACE TRIGGER pginval_upd AFTER UPDATE ON %s'
         ' FOR EACH ROW WHEN (NOT (OLD *= NEW))'
         ' EXECUTE FUNCTION pginval.on_row(%s)'),
        (NULL, 'pginval_trunc', 32,
         'pginval.on_truncate()'::regprocedure, arg.bytes2, arg.list2,
         NULL, NULL,
         'CREATE OR REPLACE TRIGGER pginval_trunc AFTER TRUNCATE ON %s'
         ' FOR EACH STATEMENT EXECUTE FUNCTION pginval.on_truncate(%s)'),
        ('part', 'pginval_part_ins', 4,
         'pginval.on_statement()'::regprocedure, arg.bytes, arg.list,
         NULL, 'pginval_rows',
         'CREATE OR REPLACE TRIGGER pginval_part_ins AFTER INSERT ON %s'
         ' REFERENCING NEW TABLE AS pginval_rows'
         ' FOR EACH STATEMENT EXECUTE FUNCTION pginval.on_statement(%s)'),
        ('part', 'pginval_part_upd', 16,
         'pginval.on_statement()'::regprocedure, arg.bytes, arg.list,
         'pginval_old', 'pginval_new',
         'CREATE OR REPLACE TRIGGER pginval_part_upd AFTER UPDATE ON %s'
         ' REFERENCING OLD TABLE AS pginval_old NEW TABLE AS pginval_new'
         ' FOR EACH STATEMENT EXECUTE FUNCTION pginval.on_statement(%s)'),
        ('part', 'pginval_part_del', 8,
         'pginval.on_statement()'::regprocedure, arg.bytes, arg.list,
         'pginval_rows', NULL,
         'CREATE OR REPLACE TRIGGER pginval_part_del AFTER DELETE ON %s'
         ' REFERENCING OLD TABLE AS pginval_rows'
         ' FOR EACH STATEMENT EXECUTE FUNCTION pginval.on_statement(%s)'),
        ('part', 'pginval_part_trunc', 32,
         'pginval.on_truncate()'::regprocedure, arg.bytes2, arg.list2,
         NULL, NULL,
         'CREATE OR REPLACE TRIGGER pginval_part_trunc AFTER TRUNCATE ON %s'
         ' FOR EACH STATEMENT EXECUTE FUNCTION pginval.on_truncate(%s)'))
           AS t(layout, name, type, func, args, list, oldtable, newtable, ddl)
     WHERE (t.layout = tbl.layout
            OR (t.layout IS NULL AND tbl.layout <> 'part'))
       -- In wal mode, only TRUNCATE triggers, in a partition tree: one
       -- on each partition, whose TRUNCATE pgoutput does not publish as
       -- the root's, and one on the root that only marks the transaction
       -- (pgoutput publishes the root's), so that its partitions' stay
       -- quiet (see on_truncate()).
       AND (mode <> 'wal' OR t.name = 'pginval_part_trunc'
            OR (t.name = 'pginval_trunc' AND tbl.kind = 'p'))
     ORDER BY t.name
$$;

-- Internal: create, or replace, the triggers of a table, with the arguments
-- taken as they are (watch() validates them first), and drop those of the
-- other layouts. Also used at the end of this file to rewrite the triggers
-- of an older installation, whose registry may name columns dropped since.
DROP FUNCTION IF EXISTS pginval._install_triggers(regclass, text[], text, text);
CREATE OR REPLACE FUNCTION pginval._install_triggers(
    relid   regclass,
    columns text[],
    channel text,
    mode    text,
    covered boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
BEGIN
    -- CREATE OR REPLACE TRIGGER takes a SHARE ROW EXCLUSIVE lock, where
    -- DROP TRIGGER takes ACCESS EXCLUSIVE and blocks readers of a busy
    -- table: triggers are only dropped when there are some to drop, which
    -- re-watching a table never needs (unless it changes layouts).
    FOR t IN SELECT * FROM pginval._triggers(relid, columns, channel, mode,
                                             covered)
    LOOP
        EXECUTE t.ddl;
    END LOOP;
    FOR t IN
        SELECT tg.tgname
          FROM pg_trigger tg
         WHERE tg.tgrelid = relid
           AND tg.tgname IN ('pginval_ins_del', 'pginval_ins', 'pginval_upd',
                             'pginval_del', 'pginval_trunc',
                             'pginval_part_ins', 'pginval_part_upd',
                             'pginval_part_del', 'pginval_part_trunc')
           AND tg.tgname NOT IN (SELECT e.name FROM pginval._triggers(
                                     relid, columns, channel, mode, covered) e)
    LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', t.tgname, relid);
    END LOOP;
END;
$$;

-- Internal: whether the pginval triggers of a table differ from those that
-- _triggers() describes for these arguments (one missing, one too many,
-- or one with other arguments, events or transition tables).
CREATE OR REPLACE FUNCTION pginval._stale(
    relid   regclass,
    columns text[],
    channel text,
    mode    text,
    covered boolean DEFAULT false)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (
        (SELECT t.tgname, t.tgtype, t.tgfoid, t.tgargs, t.tgoldtable,
                t.tgnewtable
           FROM pg_trigger t
          WHERE t.tgrelid = relid
            AND t.tgname IN ('pginval_ins', 'pginval_upd', 'pginval_del',
                             'pginval_ins_del', 'pginval_trunc',
                             'pginval_part_ins', 'pginval_part_upd',
                             'pginval_part_del', 'pginval_part_trunc')
         EXCEPT
         SELECT e.name, e.type, e.func, e.args, e.oldtable, e.newtable
           FROM pginval._triggers(relid, columns, channel, mode, covered) e)
        UNION ALL
        (SELECT e.name, e.type, e.func, e.args, e.oldtable, e.newtable
           FROM pginval._triggers(relid, columns, channel, mode, covered) e
         EXCEPT
         SELECT t.tgname, t.tgtype, t.tgfoid, t.tgargs, t.tgoldtable,
                t.tgnewtable
           FROM pg_trigger t
          WHERE t.tgrelid = relid))
$$;

-- Internal: cover every other table of a watched root's partition tree
-- (see _triggers()), at any depth, with the root's arguments. A table of
-- the tree watched on its own is taken over: its registry row goes, and
-- its changes are sent as the root's from then on. Only tables whose
-- triggers differ are touched, so a call with nothing to do takes no lock.
-- Then drops the pginval_part_ triggers of tables that left a watched tree
-- (detached, or whose root was unwatched): they would speak for a table
-- they are no longer part of. Called by watch(), at the end of this file,
-- and by the event trigger below, in the context of each.
CREATE OR REPLACE FUNCTION pginval._sync_partitions(
    root    regclass,
    columns text[],
    channel text,
    mode    text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d record;
    o record;
    trg name;
BEGIN
    FOR d IN
        SELECT t.relid, c.relkind,
               EXISTS (SELECT FROM pginval.watched w
                        WHERE w.relid = t.relid) AS own
          FROM pg_partition_tree(root) t
          JOIN pg_class c ON c.oid = t.relid
         WHERE t.relid <> root
         ORDER BY t.level, t.relid
    LOOP
        IF d.own THEN
            DELETE FROM pginval.watched w WHERE w.relid = d.relid
            RETURNING w.mode, w.channel, w.identities INTO o;
            IF o.mode = 'wal' THEN
                PERFORM pginval._wal_leave(d.relid, o.channel, o.identities);
            END IF;
            RAISE NOTICE 'pginval: % is a partition of %, which covers it: '
                'its changes are now sent as %''s', d.relid, root, root;
        END IF;
        IF d.relkind NOT IN ('r', 'p') THEN
            -- A foreign table takes no trigger with transition tables.
            RAISE WARNING 'pginval: partition % of % is not a table: '
                'changes made to it directly are not seen', d.relid, root;
        ELSIF pginval._stale(d.relid, columns, channel, mode, true) THEN
            PERFORM pginval._install_triggers(d.relid, columns, channel,
                                              mode, true);
        END IF;
    END LOOP;
    FOR d IN
        SELECT DISTINCT tg.tgrelid AS relid
          FROM pg_trigger tg
         WHERE tg.tgname IN ('pginval_part_ins', 'pginval_part_upd',
                             'pginval_part_del', 'pginval_part_trunc')
           AND NOT EXISTS (SELECT FROM pginval._root(tg.tgrelid) r
                            WHERE r.root <> tg.tgrelid)
    LOOP
        FOR trg IN
            SELECT tg.tgname FROM pg_trigger tg
             WHERE tg.tgrelid = d.relid
               AND tg.tgname IN ('pginval_part_ins', 'pginval_part_upd',
                                 'pginval_part_del', 'pginval_part_trunc')
        LOOP
            EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', trg,
                           d.relid::regclass);
        END LOOP;
    END LOOP;
END;
$$;

-- ---------------------------------------------------------------------------
-- wal mode.
--
-- The daemon reads the changes of a channel's wal tables from a logical
-- replication slot, with the pgoutput plugin, through the channel's
-- publication. pgoutput sends each value as the text of its type's output
-- function, in the daemon's session; the triggers send the text of
-- to_jsonb(), in the writer's. _wal_class() says, for a column type
-- (a domain counts as its base type, as in to_jsonb()), how the daemon
-- gets the second from the first, or that it cannot (NULL: watch() then
-- refuses the column). Checked on PostgreSQL 15, value by value:
--
--   text         the same text: integers, numeric (NaN and Infinity too),
--                text, varchar, char(n) (padded in both), uuid, bytea,
--                date (BC and infinity too), time, timetz (to_jsonb()
--                uses its output function), interval, inet, cidr, macaddr,
--                money, enums, oid, bit, ranges. Given the same DateStyle
--                (ISO), IntervalStyle, TimeZone, bytea_output and
--                lc_monetary in both sessions.
--   bool         t, f: to_jsonb() gives true, false.
--   timestamp    "2024-01-02 03:04:05.5": to_jsonb() puts a T between date
--                and time, whatever DateStyle; "0044-03-15 12:00:00 BC",
--                infinity and -infinity the same but for the T.
--   timestamptz  the T, and an offset of whole hours gets its minutes:
--                "+01" becomes "+01:00", "+05:30" and "+05:53:28" stay.
--                The offset is the session's TimeZone's: the writer's for
--                the triggers, the daemon's for pgoutput.
--   NULL         json, jsonb, arrays, composites; float4 and float8, whose
--                text to_jsonb() reads as a number (1e+20 comes as
--                100000000000000000000, 1.5e-07 as 0.00000015, -0 as 0);
--                and a type that is not built in with a cast to json or
--                jsonb, which to_jsonb() may call.
CREATE OR REPLACE FUNCTION pginval._wal_class(typ oid)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
BEGIN
    LOOP
        SELECT y.typtype, y.typbasetype, y.typelem, y.typsubscript
          INTO t FROM pg_type y WHERE y.oid = typ;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        EXIT WHEN t.typtype <> 'd';
        typ := t.typbasetype;
    END LOOP;
    IF typ = 'bool'::regtype THEN
        RETURN 'bool';
    ELSIF typ = 'timestamp'::regtype THEN
        RETURN 'timestamp';
    ELSIF typ = 'timestamptz'::regtype THEN
        RETURN 'timestamptz';
    ELSIF typ IN ('json'::regtype, 'jsonb'::regtype, 'float4'::regtype,
                  'float8'::regtype)
          OR t.typtype IN ('c', 'p')
          OR (t.typelem <> 0
              AND t.typsubscript = 'array_subscript_handler'::regproc)
          OR (typ >= 16384
              AND EXISTS (SELECT FROM pg_cast c
                           WHERE c.castsource = typ
                             AND c.casttarget IN ('json'::regtype,
                                                  'jsonb'::regtype))) THEN
        RETURN NULL;
    END IF;
    RETURN 'text';
END;
$$;

-- Internal: the key columns of an index, in key order; '{}' for none.
CREATE OR REPLACE FUNCTION pginval._index_keys(idx oid)
RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(a.attname::text ORDER BY k.ord), '{}')
      FROM pg_index i
     CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY
           AS k(attnum, ord)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indexrelid = idx
       AND k.ord <= i.indnkeyatts
$$;

-- Internal: the REPLICA IDENTITY of a table, kind ('d' default, 'n'
-- nothing, 'f' full, 'i' index), its index (for 'i' only), and the
-- columns whose old values it logs: NULL for 'f' (all), the primary key's
-- for 'd' (none without one), the index's for 'i' (none once it is
-- dropped).
CREATE OR REPLACE FUNCTION pginval._identity(rel oid, OUT kind "char",
                                             OUT idx oid, OUT cols text[])
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT c.relreplident INTO kind FROM pg_class c WHERE c.oid = rel;
    IF kind = 'i' THEN
        SELECT i.indexrelid INTO idx FROM pg_index i
         WHERE i.indrelid = rel AND i.indisreplident;
        cols := pginval._index_keys(idx);
    ELSIF kind = 'd' THEN
        cols := pginval._index_keys((SELECT i.indexrelid FROM pg_index i
                                      WHERE i.indrelid = rel
                                        AND i.indisprimary));
    ELSIF kind = 'n' THEN
        cols := '{}';
    END IF;
END;
$$;

-- Internal: the narrowest index of a table that can be its replica
-- identity (unique, valid, not deferrable, not partial, on columns only,
-- all NOT NULL) and whose key holds every column of need; NULL if none.
CREATE OR REPLACE FUNCTION pginval._identity_index(rel oid, need text[])
RETURNS oid
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT i.indexrelid
      FROM pg_index i
      JOIN pg_class c ON c.oid = i.indrelid AND c.relkind = 'r'
     WHERE i.indrelid = rel
       AND i.indisunique AND i.indisvalid AND i.indisready AND i.indislive
       AND i.indimmediate
       AND i.indpred IS NULL AND i.indexprs IS NULL
       AND NOT EXISTS (SELECT FROM unnest(i.indkey::int2[]) WITH ORDINALITY
                                   AS k(attnum, ord)
                         LEFT JOIN pg_attribute a
                           ON a.attrelid = rel AND a.attnum = k.attnum
                        WHERE k.ord <= i.indnkeyatts
                          AND (a.attnum IS NULL OR NOT a.attnotnull))
       AND need <@ pginval._index_keys(i.indexrelid)
     ORDER BY i.indnkeyatts, i.indisprimary DESC,
              i.indexrelid::regclass::text
     LIMIT 1
$$;

-- Internal: ALTER TABLE ... REPLICA IDENTITY, with a clear error for a
-- table the caller does not own. Takes an ACCESS EXCLUSIVE lock on it
-- until the transaction ends.
CREATE OR REPLACE FUNCTION pginval._set_identity(rel regclass, kind "char",
                                                 idx oid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s REPLICA IDENTITY %s', rel,
        CASE kind WHEN 'f' THEN 'FULL' WHEN 'n' THEN 'NOTHING'
                  WHEN 'd' THEN 'DEFAULT'
                  ELSE format('USING INDEX %I', (SELECT c.relname
                                                   FROM pg_class c
                                                  WHERE c.oid = idx)) END);
EXCEPTION WHEN insufficient_privilege THEN
    RAISE EXCEPTION 'pginval: % may not change the replica identity of %',
        current_user, rel
        USING ERRCODE = 'insufficient_privilege',
              HINT = format('Only its owner can: run this as %s.',
                            (SELECT c.relowner::regrole FROM pg_class c
                              WHERE c.oid = rel));
END;
$$;

-- Internal: gives tbl, a table watched in wal mode or a leaf partition of
-- a root watched in wal mode (owner, whose registry row records the
-- changes), a REPLICA IDENTITY that logs the old values of cols (of every
-- column when must_full), so that an UPDATE or DELETE brings them to the
-- WAL. Returns the identity's kind.
--
-- Starting from the identity the user set (the one found, or the one found
-- before pginval changed it, unless someone changed it since): kept when
-- it covers cols (FULL; DEFAULT with cols in the primary key; USING INDEX
-- with cols in the index); else the narrowest index that can serve and
-- whose key holds cols and every column of the user's identity, so that
-- nothing it logged is lost; else FULL. A partitioned table takes FULL, not
-- an index. What changed is recorded before the ALTER TABLE, so that the
-- event trigger it fires, which calls this again, finds nothing to do.
CREATE OR REPLACE FUNCTION pginval._wal_identity(owner regclass,
                                                 tbl regclass,
                                                 cols text[],
                                                 must_full boolean)
RETURNS "char"
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cur       record;
    rec       pginval.identity_change;
    user_kind "char";
    user_idx  oid;
    user_cols text[];
    to_kind   "char";
    to_idx    oid;
BEGIN
    SELECT * INTO cur FROM pginval._identity(tbl);
    SELECT e.* INTO rec
      FROM pginval.watched w CROSS JOIN LATERAL unnest(w.identities) e
     WHERE w.relid = owner AND e.rel = tbl;
    IF rec.rel IS NOT NULL AND rec.set = cur.kind
       AND rec.set_index IS NOT DISTINCT FROM cur.idx THEN
        user_kind := rec.was;
        user_idx := rec.was_index;
        user_cols := CASE user_kind
            WHEN 'f' THEN NULL
            WHEN 'n' THEN '{}'
            WHEN 'i' THEN pginval._index_keys(user_idx)
            ELSE pginval._index_keys((SELECT i.indexrelid FROM pg_index i
                                       WHERE i.indrelid = tbl
                                         AND i.indisprimary)) END;
    ELSE
        user_kind := cur.kind;
        user_idx := cur.idx;
        user_cols := cur.cols;
    END IF;

    IF must_full THEN
        to_kind := 'f';
    ELSIF user_kind = 'f' OR cols <@ user_cols THEN
        to_kind := user_kind;
        to_idx := user_idx;
    ELSE
        to_idx := pginval._identity_index(tbl, cols || user_cols);
        to_kind := CASE WHEN to_idx IS NULL THEN 'f' ELSE 'i' END;
    END IF;

    UPDATE pginval.watched w
       SET identities = ARRAY(SELECT ROW(e.rel, e.was, e.was_index, e.set,
                                         e.set_index)::pginval.identity_change
                                FROM unnest(w.identities) e
                               WHERE e.rel <> tbl)
           || CASE WHEN to_kind = user_kind
                        AND to_idx IS NOT DISTINCT FROM user_idx
                   THEN '{}'::pginval.identity_change[]
                   ELSE ARRAY[ROW(tbl, user_kind, user_idx, to_kind,
                                  to_idx)::pginval.identity_change] END
     WHERE w.relid = owner;
    IF cur.kind IS DISTINCT FROM to_kind
       OR cur.idx IS DISTINCT FROM to_idx THEN
        PERFORM pginval._set_identity(tbl, to_kind, to_idx);
    END IF;
    RETURN to_kind;
END;
$$;

-- Internal: whether a leaf partition of a root watched in wal mode has an
-- identity that gives the root's stream the old values of cols. pgoutput
-- describes a partition's change with the root's Relation message and its
-- old-image flag ('O' when the root's identity is FULL, else 'K', with the
-- root's key columns), but the values are those that the partition's own
-- identity logged: under a FULL root, a partition logging its key only
-- would send the other columns as NULLs marked as old values.
CREATE OR REPLACE FUNCTION pginval._wal_leaf_ok(leaf oid, cols text[],
                                                root_full boolean)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT i.kind = 'f' OR (NOT $3 AND $2 <@ i.cols)
      FROM pginval._identity($1) i
$$;

-- Internal: the replica identities of a table watched in wal mode, and of
-- the leaf partitions of a watched root (those created since included):
-- FULL on every partition when the root's identity is FULL, else one that
-- covers the watched columns. Tables of the tree watched on their own are
-- taken over (unwatched, with a NOTICE), as _sync_partitions() does.
-- Called by watch(), at the end of this file, and by the event trigger.
CREATE OR REPLACE FUNCTION pginval._wal_sync(root regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cols text[];
    chan text;
    root_full boolean;
    d    record;
    o    record;
BEGIN
    SELECT w.columns, w.channel INTO cols, chan FROM pginval.watched w
     WHERE w.relid = root AND w.mode = 'wal';
    IF NOT FOUND THEN
        RETURN;
    END IF;
    root_full := pginval._wal_identity(root, root, cols, false) = 'f';
    FOR d IN
        SELECT t.relid, c.relkind, t.isleaf
          FROM pg_partition_tree(root) t
          JOIN pg_class c ON c.oid = t.relid
         WHERE t.relid <> root
         ORDER BY t.level, t.relid
    LOOP
        DELETE FROM pginval.watched w WHERE w.relid = d.relid
        RETURNING w.mode, w.channel, w.identities INTO o;
        IF FOUND THEN
            PERFORM pginval._drop_triggers(d.relid);
            IF o.mode = 'wal' THEN
                PERFORM pginval._wal_leave(d.relid, o.channel, o.identities);
            END IF;
            RAISE NOTICE 'pginval: % is a partition of %, which covers it: '
                'its changes are now sent as %''s', d.relid::regclass, root,
                root;
        END IF;
        -- A TRUNCATE aimed at a partition is not published as the
        -- root's: a trigger puts it into the WAL as a message.
        IF d.relkind IN ('r', 'p')
           AND pginval._stale(d.relid, cols, chan, 'wal', true) THEN
            PERFORM pginval._install_triggers(d.relid, cols, chan, 'wal',
                                              true);
        END IF;
        IF d.relkind = 'r' THEN
            PERFORM pginval._wal_identity(root, d.relid, cols, root_full);
        ELSIF d.isleaf THEN
            RAISE WARNING 'pginval: partition % of % is not a table: '
                'changes made to it are not published', d.relid::regclass,
                root;
        END IF;
    END LOOP;
END;
$$;

-- Internal: puts back the replica identities recorded in recs (a registry
-- row's identities, the row already gone or changed), where they are
-- still what pginval set; an identity changed since by someone else is
-- theirs, and is left alone.
CREATE OR REPLACE FUNCTION pginval._wal_restore(
    recs pginval.identity_change[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e   record;
    cur record;
BEGIN
    FOR e IN SELECT u.* FROM unnest(recs) u
              WHERE EXISTS (SELECT FROM pg_class c WHERE c.oid = u.rel)
    LOOP
        SELECT * INTO cur FROM pginval._identity(e.rel);
        IF cur.kind IS DISTINCT FROM e.set
           OR cur.idx IS DISTINCT FROM e.set_index::oid THEN
            CONTINUE;
        END IF;
        IF e.was = 'i' AND NOT EXISTS (SELECT FROM pg_index i
                                        WHERE i.indexrelid = e.was_index
                                          AND i.indrelid = e.rel) THEN
            RAISE NOTICE 'pginval: the replica identity of % stays %: its '
                'index % is gone', e.rel,
                CASE e.set WHEN 'f' THEN 'FULL' ELSE 'USING INDEX' END,
                e.was_index;
            CONTINUE;
        END IF;
        PERFORM pginval._set_identity(e.rel, e.was, e.was_index);
    END LOOP;
END;
$$;

-- Internal: the channel's publication, created when missing, with the
-- options the daemon needs, and tbl in it (a partitioned table covers its
-- partitions, those created later too, under its own name: via the root).
-- A table of an inheritance tree is added alone (ONLY): its children's
-- changes would come under their own names.
CREATE OR REPLACE FUNCTION pginval._wal_publish(tbl regclass, channel text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pub text := pginval.publication(channel);
    p   record;
    r   record;
BEGIN
    SELECT * INTO p FROM pg_publication x WHERE x.pubname = pub;
    IF NOT FOUND THEN
        IF NOT has_database_privilege(current_database(), 'CREATE') THEN
            RAISE EXCEPTION 'pginval.watch: % may not create the publication '
                '% of channel %', current_user, pub, channel
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('Have the database''s owner run: GRANT '
                          'CREATE ON DATABASE %I TO %I; or create it and '
                          'give it to %I: CREATE PUBLICATION %I; ALTER '
                          'PUBLICATION %I OWNER TO %I;', current_database(),
                          current_user, current_user, pub, pub,
                          current_user);
        END IF;
        EXECUTE format('CREATE PUBLICATION %I WITH (publish = %L, '
                       'publish_via_partition_root = true)', pub,
                       'insert, update, delete, truncate');
        EXECUTE format('COMMENT ON PUBLICATION %I IS %L', pub,
                       'pginval: the tables of channel ' || channel
                       || ' watched in wal mode');
        SELECT * INTO p FROM pg_publication x WHERE x.pubname = pub;
    ELSE
        IF NOT pg_has_role(p.pubowner, 'USAGE') THEN
            RAISE EXCEPTION 'pginval.watch: the publication % of channel % '
                'belongs to %, not to %', pub, channel, p.pubowner::regrole,
                current_user
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('Run pginval.watch() as %s, or have it '
                          'run: ALTER PUBLICATION %I OWNER TO %I;',
                          p.pubowner::regrole, pub, current_user);
        END IF;
        IF p.puballtables THEN
            RAISE EXCEPTION 'pginval.watch: the publication % of channel % '
                'is FOR ALL TABLES', pub, channel
                USING ERRCODE = 'object_in_use',
                      HINT = 'pginval needs it to publish the watched tables '
                          'only: drop it, or use another channel.';
        END IF;
        IF NOT (p.pubinsert AND p.pubupdate AND p.pubdelete
                AND p.pubtruncate AND p.pubviaroot) THEN
            EXECUTE format('ALTER PUBLICATION %I SET (publish = %L, '
                           'publish_via_partition_root = true)', pub,
                           'insert, update, delete, truncate');
        END IF;
    END IF;
    SELECT * INTO r FROM pg_publication_rel x
     WHERE x.prpubid = p.oid AND x.prrelid = tbl;
    -- Added by hand with a row filter or a column list: not all of it.
    IF FOUND AND (r.prqual IS NOT NULL OR r.prattrs IS NOT NULL) THEN
        EXECUTE format('ALTER PUBLICATION %I DROP TABLE %s', pub, tbl);
    ELSIF FOUND THEN
        RETURN;
    END IF;
    EXECUTE format('ALTER PUBLICATION %I ADD TABLE %s%s', pub,
                   CASE WHEN (SELECT c.relkind FROM pg_class c
                               WHERE c.oid = tbl) = 'r'
                        THEN 'ONLY ' ELSE '' END, tbl);
END;
$$;

-- Internal: a table leaves wal mode (its registry row already gone or
-- changed): out of the channel's publication, which stays, maybe empty (a
-- daemon streams it), and its identities put back.
CREATE OR REPLACE FUNCTION pginval._wal_leave(tbl regclass, channel text,
                                              recs pginval.identity_change[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pub text := pginval.publication(channel);
BEGIN
    IF EXISTS (SELECT FROM pg_publication p
                 JOIN pg_publication_rel r ON r.prpubid = p.oid
                WHERE p.pubname = pub AND r.prrelid = tbl) THEN
        BEGIN
            EXECUTE format('ALTER PUBLICATION %I DROP TABLE %s', pub, tbl);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'pginval: % may not take % out of the '
                'publication %', current_user, tbl, pub
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('Only its owner can: run this as %s.',
                          (SELECT p.pubowner::regrole FROM pg_publication p
                            WHERE p.pubname = pub));
        END;
    END IF;
    PERFORM pginval._wal_restore(recs);
END;
$$;

-- The watched columns of a channel's tables watched in wal mode, for the
-- daemon, which reads them before it streams: one row per watched column
-- that still exists, in watch()'s order, with its type and how the daemon
-- renders its text (_wal_class()). table_name is spelled as in
-- watched_tables. relid is the table's OID, which the stream's Relation
-- messages carry (a partitioned table's, for the changes of its
-- partitions). SECURITY DEFINER, so that the daemon's role needs no grant
-- on pginval.watched; it says no more than pg_class and pg_attribute do.
CREATE OR REPLACE FUNCTION pginval.wal_columns(channel text)
RETURNS TABLE (relid oid, table_name text, col text, typid oid,
               class text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.oid, n.nspname::text || '.' || c.relname::text,
           a.attname::text, a.atttypid, pginval._wal_class(a.atttypid)
      FROM pginval.watched w
      JOIN pg_class c ON c.oid = w.relid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     CROSS JOIN LATERAL unnest(w.columns) WITH ORDINALITY AS u(name, ord)
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = u.name
                         AND a.attnum > 0 AND NOT a.attisdropped
     WHERE w.mode = 'wal' AND w.channel = $1
       AND pginval._published(c.oid, w.channel)
     ORDER BY c.oid, u.ord
$$;

-- Internal: the root watched in wal mode that covers relid, a partition;
-- NULL when there is none.
CREATE OR REPLACE FUNCTION pginval._wal_root(relid oid)
RETURNS oid
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT w.relid::oid
      FROM pginval.watched w
      JOIN pg_class c ON c.oid = w.relid AND c.relkind = 'p'
     WHERE w.relid = pg_partition_root($1)
       AND w.relid <> $1
       AND w.mode = 'wal'
       AND pginval._published(w.relid, w.channel)
$$;

-- Internal: drops the pginval triggers of a table, of every layout (see
-- _triggers()), and the pginval_part_ triggers of the other tables of its
-- tree when it is partitioned.
CREATE OR REPLACE FUNCTION pginval._drop_triggers(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT tg.tgrelid::regclass AS rel, tg.tgname
          FROM pg_trigger tg
         WHERE (tg.tgrelid = tbl
                AND tg.tgname IN ('pginval_ins', 'pginval_upd', 'pginval_del',
                                  'pginval_ins_del', 'pginval_trunc',
                                  'pginval_part_ins', 'pginval_part_upd',
                                  'pginval_part_del', 'pginval_part_trunc'))
            OR (tg.tgrelid IN (SELECT p.relid FROM pg_partition_tree(tbl) p
                                WHERE p.relid <> tbl)
                AND tg.tgname IN ('pginval_part_ins', 'pginval_part_upd',
                                  'pginval_part_del', 'pginval_part_trunc'))
         ORDER BY tg.tgrelid, tg.tgname
    LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', t.tgname, t.rel);
    END LOOP;
END;
$$;

-- Who runs and owns what (see the top of this file). PUBLIC gets EXECUTE
-- on every new function; only the owner, pginval_trigger, keeps it on the
-- trigger functions and their helpers.
DO $$
DECLARE
    f regprocedure;
BEGIN
    -- A new owner needs CREATE on the schema, unless a superuser changes
    -- it; pginval_trigger keeps none once this is done.
    GRANT CREATE ON SCHEMA pginval TO pginval_trigger;
    FOREACH f IN ARRAY ARRAY[
        'pginval.on_row()', 'pginval.on_statement()', 'pginval.on_truncate()',
        'pginval._send_row(text, text, text[], text, text, jsonb, jsonb)',
        'pginval._signed(text, bytea, bytea)',
        'pginval._root(oid)']::regprocedure[]
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO pginval_trigger', f);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
    REVOKE CREATE ON SCHEMA pginval FROM pginval_trigger;
END;
$$;

-- The mode parameter changed watch()'s signature. CREATE OR REPLACE would
-- add the new function beside the old one, and every call leaving out the
-- trailing arguments would then be ambiguous.
DROP FUNCTION IF EXISTS pginval.watch(regclass, text[], text);

-- Start watching a table, or change how it is watched. Calling it again
-- replaces the triggers and the registry row, so it doubles as "alter".
-- Rows already in the outbox stay there when a table leaves durable or
-- poll mode. Switching to or from wal mode, or between channels in it,
-- happens in the caller's transaction, all of it or none: triggers
-- dropped or installed, the table in or out of its publication, its
-- replica identity set or put back (see _wal_identity()).
--
-- Columns are given by exact attribute name (as in pg_attribute, so
-- "UserId" is not userid). The UPDATE trigger fires on any real change to
-- the row, watched column or not: the consumer may cache whole rows.
--
-- A partitioned table is watched as the root of its tree: every partition,
-- at any depth, present or future, is covered (see _triggers() and the
-- event trigger below), and its changes are sent under the root's name.
-- A partition may instead be watched on its own (row layout), as long as
-- its root is not watched; watching the root takes such partitions over.
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
    part    boolean;
    owner   oid;
    col     text;
    typ     oid;
    root    regclass;
    prev    record;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'pginval.watch: table must not be NULL';
    END IF;

    SELECT c.relkind, n.nspname, c.relispartition, c.relowner
      INTO kind, nsp, part, owner
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = tbl;
    -- A statement aimed at the root of the tree fires the root's statement
    -- triggers only: a partitioned table below the root would miss them.
    IF kind = 'p' AND part THEN
        root := pg_partition_root(tbl);
        RAISE EXCEPTION 'pginval.watch: % is a partition of %', tbl, root
            USING ERRCODE = 'wrong_object_type',
                  HINT = format('Watch %s, the root of its partition tree: '
                                'that covers all its partitions.', root);
    END IF;
    IF kind = 'r' AND part THEN
        SELECT r.root INTO root FROM pginval._root(tbl) r;
        root := coalesce(root, pginval._wal_root(tbl));
        IF root IS NOT NULL THEN
            RAISE EXCEPTION 'pginval.watch: % is a partition of %, which is '
                'watched and covers it', tbl, root
                USING ERRCODE = 'object_in_use',
                      HINT = format('Its changes are sent as %s''s. To watch '
                                    'partitions one by one, unwatch %s first.',
                                    root, root);
        END IF;
    END IF;
    IF kind IS DISTINCT FROM 'r' AND kind IS DISTINCT FROM 'p' THEN
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

    IF mode IS NULL OR mode NOT IN ('notify', 'durable', 'poll', 'wal') THEN
        RAISE EXCEPTION 'pginval.watch: invalid mode %',
            coalesce(quote_literal(mode), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The mode must be one of notify, durable, poll, wal.';
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

    SELECT w.mode, w.channel, w.identities INTO prev
      FROM pginval.watched w WHERE w.relid = tbl;

    IF mode = 'wal' THEN
        -- Adding a table to a publication and setting its replica identity
        -- both take its ownership; said here rather than halfway through.
        IF NOT pg_has_role(owner, 'USAGE') THEN
            RAISE EXCEPTION 'pginval.watch: % may not watch % in wal mode: '
                'only its owner can publish it', current_user, tbl
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('Run pginval.watch() as %s.',
                                    owner::regrole);
        END IF;
        FOREACH col IN ARRAY columns LOOP
            SELECT a.atttypid INTO typ FROM pg_attribute a
             WHERE a.attrelid = tbl AND a.attname = col;
            -- pgoutput leaves generated columns out of every change.
            IF EXISTS (SELECT FROM pg_attribute a
                        WHERE a.attrelid = tbl AND a.attname = col
                          AND a.attgenerated <> '') THEN
                RAISE EXCEPTION 'pginval.watch: column "%" of table % is '
                    'generated, and the WAL does not carry generated '
                    'columns', col, tbl
                    USING ERRCODE = 'feature_not_supported',
                          HINT = 'Watch the columns it is generated from, or '
                              'watch the table in another mode.';
            END IF;
            IF pginval._wal_class(typ) IS NULL THEN
                RAISE EXCEPTION 'pginval.watch: column "%" of table % is of '
                    'type %, whose text in the WAL cannot be turned into '
                    'the one the triggers send', col, tbl, format_type(typ, NULL)
                    USING ERRCODE = 'feature_not_supported',
                          HINT = 'Watch the table in another mode (notify, '
                              'durable or poll), or watch other columns.';
            END IF;
        END LOOP;
        PERFORM pginval._drop_triggers(tbl);
        PERFORM pginval._install_triggers(tbl, columns, channel, mode);
    ELSE
        PERFORM pginval._install_triggers(tbl, columns, channel, mode);
    END IF;

    DELETE FROM pginval.watched w
     WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = w.relid);

    INSERT INTO pginval.watched (relid, columns, channel, mode)
    VALUES (tbl, columns, channel, mode)
    ON CONFLICT (relid) DO UPDATE
       SET columns = EXCLUDED.columns,
           channel = EXCLUDED.channel,
           mode = EXCLUDED.mode,
           identities = CASE WHEN EXCLUDED.mode = 'wal'
                             THEN pginval.watched.identities
                             ELSE '{}' END,
           watched_at = now();

    -- Out of the publication it was in, and, leaving wal mode, the
    -- identities put back; after the registry row changed, so that the
    -- event trigger that ALTER TABLE fires leaves them alone.
    IF prev.mode = 'wal' AND (mode <> 'wal' OR prev.channel <> channel) THEN
        PERFORM pginval._wal_leave(tbl, prev.channel,
            CASE WHEN mode = 'wal' THEN '{}' ELSE prev.identities END);
    END IF;

    IF mode = 'wal' THEN
        PERFORM pginval._wal_publish(tbl, channel);
        PERFORM pginval._wal_sync(tbl);
        IF current_setting('wal_level') <> 'logical' THEN
            RAISE WARNING 'pginval.watch: wal_level is %, not logical: no '
                'daemon can read the changes of % from the WAL',
                current_setting('wal_level'), tbl
                USING HINT = 'Run ALTER SYSTEM SET wal_level = logical; then '
                    'restart PostgreSQL.';
        END IF;
        IF kind = 'p' AND NOT EXISTS (SELECT FROM pg_event_trigger
                                       WHERE evtname = 'pginval_partitions'
                                         AND evtenabled <> 'D') THEN
            RAISE WARNING 'pginval.watch: the event trigger '
                'pginval_partitions is not installed: partitions created or '
                'attached from now on are published, but keep their own '
                'replica identity until watch() is called again'
                USING HINT = 'Run pginval.sql as a superuser to install it; '
                    'until then, pginval check --connect lists the '
                    'partitions whose identity does not fit.';
        END IF;
        RETURN;
    END IF;

    IF kind = 'p' THEN
        PERFORM pginval._sync_partitions(tbl, columns, channel, mode);
        IF NOT EXISTS (SELECT FROM pg_event_trigger
                        WHERE evtname = 'pginval_partitions'
                          AND evtenabled <> 'D') THEN
            RAISE WARNING 'pginval.watch: the event trigger '
                'pginval_partitions is not installed: partitions created or '
                'attached from now on are not covered until watch() is '
                'called again'
                USING HINT = 'Run pginval.sql as a superuser to install it; '
                    'until then, pginval check --connect lists the '
                    'partitions left uncovered.';
        END IF;
    END IF;
END;
$$;

-- Stop watching a table. Safe to call on a table that is not watched.
-- Unwatching a partitioned table uncovers all its partitions; a partition
-- covered by its watched root cannot be unwatched alone. In wal mode, the
-- table leaves its publication, which stays (maybe empty), and gets back
-- the replica identities watch() changed, unless they changed since.
CREATE OR REPLACE FUNCTION pginval.unwatch(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    root regclass;
    prev record;
BEGIN
    SELECT r.root INTO root FROM pginval._root(tbl) r WHERE r.root <> tbl;
    root := coalesce(root, pginval._wal_root(tbl));
    IF root IS NOT NULL THEN
        RAISE EXCEPTION 'pginval.unwatch: % is a partition of %, which is '
            'watched and covers it', tbl, root
            USING ERRCODE = 'object_in_use',
                  HINT = format('Unwatch %s to stop watching all of it.',
                                root);
    END IF;
    SELECT w.mode, w.channel, w.identities INTO prev
      FROM pginval.watched w WHERE w.relid = tbl;
    PERFORM pginval._drop_triggers(tbl);
    -- Also purge rows of tables dropped since they were watched.
    DELETE FROM pginval.watched w
     WHERE w.relid = tbl
        OR NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = w.relid);
    -- wal mode: out of the publication, the identities put back.
    IF prev.mode = 'wal' THEN
        PERFORM pginval._wal_leave(tbl, prev.channel, prev.identities);
    END IF;
END;
$$;

-- The partitions of watched roots that are not covered (see _triggers(),
-- and _wal_leaf_ok() for wal mode): created or attached while the event
-- trigger below was missing or disabled, a foreign table, or triggers (or
-- a replica identity) changed by hand. Their changes,
-- made by statements aimed at them, are not seen. fix is the watch() call
-- that covers them again. pginval check --connect reads this view.
CREATE OR REPLACE VIEW pginval.uncovered_partitions AS
SELECT n.nspname::text || '.' || c.relname::text AS partition,
       rn.nspname::text || '.' || r.relname::text AS root,
       CASE WHEN c.relkind NOT IN ('r', 'p')
            THEN 'not a table: changes made to it directly are not seen'
            WHEN EXISTS (SELECT FROM pginval.watched o WHERE o.relid = c.oid)
            THEN 'watched on its own: sent under its own name, and twice'
            WHEN NOT EXISTS (SELECT FROM pg_catalog.pg_trigger tg
                              WHERE tg.tgrelid = c.oid
                                AND tg.tgname = 'pginval_part_ins')
            THEN 'no pginval trigger: changes made to it directly are not seen'
            ELSE 'its pginval triggers differ from the root''s' END AS reason,
       format('SELECT pginval.watch(%L, %L, %L, %L);',
              rn.nspname::text || '.' || r.relname::text,
              w.columns, w.channel, w.mode) AS fix
  FROM pginval.watched w
  JOIN pg_catalog.pg_class r ON r.oid = w.relid AND r.relkind = 'p'
  JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
 CROSS JOIN LATERAL pg_catalog.pg_partition_tree(w.relid) t
  JOIN pg_catalog.pg_class c ON c.oid = t.relid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE t.relid <> w.relid
   AND EXISTS (SELECT FROM pg_catalog.pg_trigger tg
                WHERE tg.tgrelid = w.relid AND tg.tgname = 'pginval_ins')
   AND pginval._stale(t.relid, w.columns, w.channel, w.mode, true)
-- The leaf partitions of roots watched in wal mode whose replica identity
-- does not give the old values of the watched columns (see
-- _wal_leaf_ok()): created or attached while the event trigger was
-- missing, or changed by hand.
UNION ALL
SELECT n.nspname::text || '.' || c.relname::text,
       rn.nspname::text || '.' || r.relname::text,
       CASE WHEN c.relkind <> 'r'
            THEN 'not a table: its changes are not published'
            ELSE 'its replica identity does not log the old values of the '
                 'watched columns (wal mode)' END,
       format('SELECT pginval.watch(%L, %L, %L, %L);',
              rn.nspname::text || '.' || r.relname::text,
              w.columns, w.channel, w.mode)
  FROM pginval.watched w
  JOIN pg_catalog.pg_class r ON r.oid = w.relid AND r.relkind = 'p'
  JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
 CROSS JOIN LATERAL pg_catalog.pg_partition_tree(w.relid) t
  JOIN pg_catalog.pg_class c ON c.oid = t.relid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE w.mode = 'wal'
   AND t.isleaf
   AND pginval._published(w.relid, w.channel)
   AND (c.relkind <> 'r'
        OR NOT pginval._wal_leaf_ok(c.oid, w.columns, r.relreplident = 'f'));

-- The event trigger: after every CREATE TABLE and ALTER TABLE (which is
-- how partitions are created, attached and detached), covers the
-- partitions of the watched roots whose trees the command touched (in wal
-- mode: gives them the replica identity they need, see _wal_sync()), takes
-- over the tables of those trees watched on their own, and gives a table
-- watched on its own that has become a partition the row layout. A table
-- outside any partition tree costs one lookup.
--
-- Only a superuser may create an event trigger; installed by anyone else,
-- this file leaves it out and says so, and watch() warns about the
-- partitions that will be missed. The function runs on every role's DDL,
-- as its owner, a superuser (SECURITY DEFINER): the DDL's author owns the
-- new partition, but may not execute the trigger functions that
-- CREATE TRIGGER needs. It reads only catalogs and pginval.watched, which
-- no other role may write, creates and drops only pginval's triggers, and
-- calls no function outside pg_catalog and pginval; search_path is pinned,
-- and PUBLIC may not execute it. It never makes the DDL fail: any error
-- becomes a WARNING, and the partitions stay uncovered (listed in
-- uncovered_partitions) until watch() is called again.
DO $$
BEGIN
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r
             WHERE r.rolname = current_user) THEN
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger
                        WHERE evtname = 'pginval_partitions') THEN
            RAISE WARNING 'pginval: installed without the event trigger '
                'pginval_partitions, as only a superuser can create it: a '
                'partition created or attached after pginval.watch() of its '
                'partitioned table is not covered until watch() is called '
                'again or this file is run again'
                USING HINT = 'Run pginval.sql as a superuser; until then, '
                    'pginval check --connect lists the uncovered partitions.';
        END IF;
        RETURN;
    END IF;

    CREATE OR REPLACE FUNCTION pginval._on_ddl()
    RETURNS event_trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
    DECLARE
        top regclass;
        w   record;
    BEGIN
        FOR top IN
            SELECT DISTINCT pg_partition_root(e.objid)
              FROM pg_event_trigger_ddl_commands() e
             WHERE e.classid = 'pg_class'::regclass
               AND e.object_type = 'table'
               AND pg_partition_root(e.objid) IS NOT NULL
        LOOP
            BEGIN
                -- A root watched in wal mode: the identities of its
                -- partitions (see _wal_sync()).
                IF EXISTS (SELECT FROM pginval.watched r
                            WHERE r.relid = top AND r.mode = 'wal'
                              AND pginval._published(r.relid, r.channel))
                THEN
                    PERFORM pginval._wal_sync(top);
                    CONTINUE;
                END IF;
                SELECT r.relid, r.columns, r.channel, r.mode INTO w
                  FROM pginval.watched r
                 WHERE r.relid = top
                   AND EXISTS (SELECT FROM pg_trigger tg
                                WHERE tg.tgrelid = r.relid
                                  AND tg.tgname = 'pginval_ins');
                IF FOUND THEN
                    PERFORM pginval._sync_partitions(top, w.columns,
                                                     w.channel, w.mode);
                    CONTINUE;
                END IF;
                FOR w IN
                    SELECT r.relid, r.columns, r.channel, r.mode, c.relkind
                      FROM pg_partition_tree(top) t
                      JOIN pginval.watched r ON r.relid = t.relid
                      JOIN pg_class c ON c.oid = r.relid
                     WHERE EXISTS (SELECT FROM pg_trigger tg
                                    WHERE tg.tgrelid = r.relid
                                      AND tg.tgname IN ('pginval_ins',
                                                        'pginval_ins_del'))
                LOOP
                    IF w.relkind = 'p' AND w.relid <> top THEN
                        RAISE WARNING 'pginval: % is watched, but is now a '
                            'partition of %, whose statements it does not '
                            'see', w.relid, top
                            USING HINT = format('SELECT pginval.unwatch(%L); '
                                'SELECT pginval.watch(%L, ...);',
                                w.relid::text, top::text);
                    ELSIF pginval._stale(w.relid, w.columns, w.channel,
                                         w.mode) THEN
                        PERFORM pginval._install_triggers(w.relid, w.columns,
                                                          w.channel, w.mode);
                    END IF;
                END LOOP;
            EXCEPTION WHEN OTHERS THEN
                RAISE WARNING 'pginval: could not update the triggers of the '
                    'partition tree of %: %', top, SQLERRM
                    USING HINT = 'Call pginval.watch() again on the watched '
                        'table; pginval check --connect lists the partitions '
                        'left uncovered.';
            END;
        END LOOP;
    END;
    $fn$;
    REVOKE ALL ON FUNCTION pginval._on_ddl() FROM PUBLIC;

    IF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger
                    WHERE evtname = 'pginval_partitions') THEN
        CREATE EVENT TRIGGER pginval_partitions ON ddl_command_end
            WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
            EXECUTE FUNCTION pginval._on_ddl();
    END IF;

    -- A channel's publication changed by hand so that it publishes a
    -- watched table in part (a row filter, a column list, some kinds of
    -- change only, partitions under their own names): the changes left
    -- out would never reach the daemon, not even later, since it decodes
    -- with the publication as it was. So the statement is undone for
    -- pginval's tables, in its own transaction, with a WARNING; as in
    -- _on_ddl(), any error becomes a WARNING (then the table is not
    -- watched, see _published(), and check --connect says so).
    CREATE OR REPLACE FUNCTION pginval._on_publication_ddl()
    RETURNS event_trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
    DECLARE
        w record;
    BEGIN
        FOR w IN
            SELECT r.relid, r.channel, p.pubname
              FROM pginval.watched r
              JOIN pg_publication p
                ON p.pubname = pginval.publication(r.channel)
              JOIN pg_publication_rel pr
                ON pr.prpubid = p.oid AND pr.prrelid = r.relid
             WHERE r.mode = 'wal'
               AND NOT pginval._published(r.relid, r.channel)
             ORDER BY r.relid::oid
        LOOP
            BEGIN
                RAISE WARNING 'pginval: % is watched in wal mode: the '
                    'publication % publishes it whole, with every kind of '
                    'change, again', w.relid::regclass, w.pubname
                    USING HINT = 'A row filter, a column list or publish '
                        'options would hide its changes from pginval. '
                        'Call pginval.unwatch() first.';
                PERFORM pginval._wal_publish(w.relid, w.channel);
            EXCEPTION WHEN OTHERS THEN
                RAISE WARNING 'pginval: could not publish % whole in %: %',
                    w.relid::regclass, w.pubname, SQLERRM
                    USING HINT = 'Call pginval.watch() again on it.';
            END;
        END LOOP;
    END;
    $fn$;
    REVOKE ALL ON FUNCTION pginval._on_publication_ddl() FROM PUBLIC;

    IF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger
                    WHERE evtname = 'pginval_publications') THEN
        CREATE EVENT TRIGGER pginval_publications ON ddl_command_end
            WHEN TAG IN ('CREATE PUBLICATION', 'ALTER PUBLICATION')
            EXECUTE FUNCTION pginval._on_publication_ddl();
    END IF;
END;
$$;

-- Upgrade: give every watched table (those the view lists) the triggers
-- that _triggers() describes. Older installations had other arguments (no
-- mode: (channel, columns...)) or row triggers only (pginval_ins_del and a
-- row-level pginval_upd); a table also needs the other layout once it has
-- become, or stopped being, a partition or inheritance child. A table whose
-- triggers are already as described is left alone, so that re-running this
-- file takes no lock on it. Replacing row triggers by statement triggers
-- drops pginval_ins_del, which takes an ACCESS EXCLUSIVE lock on the table
-- until this file's transaction commits. Then the partitions of every
-- watched root are covered, as watch() does.
DO $$
DECLARE
    w record;
BEGIN
    FOR w IN
        SELECT r.relid, r.columns, r.channel, r.mode
          FROM pginval.watched r
         WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                        WHERE t.tgrelid = r.relid
                          AND t.tgname IN ('pginval_ins', 'pginval_ins_del'))
           AND pginval._stale(r.relid, r.columns, r.channel, r.mode)
         ORDER BY r.relid::oid
    LOOP
        PERFORM pginval._install_triggers(w.relid, w.columns, w.channel,
                                          w.mode);
    END LOOP;
    FOR w IN
        SELECT r.relid, r.columns, r.channel, r.mode
          FROM pginval.watched r
          JOIN pg_catalog.pg_class c ON c.oid = r.relid
         WHERE c.relkind = 'p' AND NOT c.relispartition
           AND EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                        WHERE t.tgrelid = r.relid
                          AND t.tgname = 'pginval_ins')
         ORDER BY r.relid::oid
    LOOP
        PERFORM pginval._sync_partitions(w.relid, w.columns, w.channel,
                                         w.mode);
    END LOOP;
    -- wal mode: the identities of the watched tables and of the
    -- partitions of the watched roots, where they no longer fit.
    FOR w IN
        SELECT r.relid
          FROM pginval.watched r
         WHERE r.mode = 'wal' AND pginval._published(r.relid, r.channel)
         ORDER BY r.relid::oid
    LOOP
        PERFORM pginval._wal_sync(w.relid);
    END LOOP;
END;
$$;


-- What is watched, and how, is no secret (pg_trigger and pg_publication
-- say as much to anyone): the daemon's role reads it to know whether
-- changes may have been lost while it was away (notify mode) and whether
-- to stream the WAL, and pginval check --connect compares it with the
-- configuration.
GRANT SELECT ON pginval.watched, pginval.watched_tables,
                pginval.uncovered_partitions TO PUBLIC;

COMMIT;
