/*
 * The connection checks behind `pginval check --connect`. Every problem
 * line names what is wrong and the fix; "ok" lines say what was verified,
 * so an operator can tell a skipped check from a passed one.
 */
#include "run/check.h"
#include "run/check_int.h"
#include "lib/buf.h"
#include "lib/esc.h"
#include "lib/pg_conn.h"
#include "core/sign.h"
#include "lib/xalloc.h"

#include <libpq-fe.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

/* Problems quote server messages, names and values: escaped, like every
 * log line, before they reach a terminal. */
static void
check_vsay(FILE *out, const char *kind, const char *fmt, va_list ap)
{
	char text[2048], shown[ESC_MAX_RATIO * sizeof(text)];
	int n;

	n = vsnprintf(text, sizeof(text), fmt, ap);
	if (n < 0)
		n = 0;
	esc_str(shown, sizeof(shown), text, strlen(text), NULL);
	fprintf(out, "%s%s%s%s\n", kind, kind[0] != '\0' ? ": " : "", shown,
	    (size_t)n >= sizeof(text) ? "..." : "");
}

int
check_problem(FILE *out, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	check_vsay(out, "problem", fmt, ap);
	va_end(ap);
	return 1;
}

void
check_ok(FILE *out, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	check_vsay(out, "ok", fmt, ap);
	va_end(ap);
}

void
check_heading(FILE *out, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	check_vsay(out, "", fmt, ap);
	va_end(ap);
}

/* libpq messages end with a newline. */
static const char *
check_pgerr(PGconn *conn)
{
	static char msg[512];
	size_t n;

	snprintf(msg, sizeof(msg), "%s", PQerrorMessage(conn));
	n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
		msg[--n] = '\0';
	for (char *p = msg; *p != '\0'; p++)
		if (*p == '\n' || *p == '\t')
			*p = ' ';
	return msg;
}

/* Is column in the PostgreSQL text array literal arr ("{id,email}")? */
static int
check_in_array(PGconn *conn, const char *arr, const char *column)
{
	const char *params[2] = { arr, column };
	PGresult *res = PQexecParams(conn, "SELECT $2 = ANY($1::text[])", 2,
	    NULL, params, NULL, NULL, 0);
	int found = PQresultStatus(res) == PGRES_TUPLES_OK &&
	    strcmp(PQgetvalue(res, 0, 0), "t") == 0;

	PQclear(res);
	return found;
}

/*
 * The watched root whose tree holds the table spelled name ("schema.table",
 * unquoted), into root; 0 if there is one, -1 if not. A [table] section
 * naming such a partition never matches: its changes come as the root's.
 */
static int
check_covering_root(PGconn *conn, const char *name, char *root, size_t size)
{
	const char *params[1] = { name };
	PGresult *res = PQexecParams(conn, "SELECT r.name FROM pg_class c "
	    "JOIN pg_namespace n ON n.oid = c.relnamespace, "
	    "LATERAL (SELECT rn.nspname::text || '.' || rc.relname::text AS name "
	    "FROM pg_class rc JOIN pg_namespace rn ON rn.oid = rc.relnamespace "
	    "WHERE rc.oid = pg_partition_root(c.oid) AND rc.oid <> c.oid) r "
	    "WHERE n.nspname::text || '.' || c.relname::text = $1 "
	    "AND r.name IN (SELECT table_name FROM pginval.watched_tables)",
	    1, NULL, params, NULL, NULL, 0);
	int rc = -1;

	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		snprintf(root, size, "%s", PQgetvalue(res, 0, 0));
		rc = 0;
	}
	PQclear(res);
	return rc;
}

/* Are the pginval triggers of a watched table all there, as watch() made
 * them? A trigger dropped by hand silences that kind of change. */
static int
check_triggers(PGconn *conn, const struct table_rule *t, FILE *out)
{
	const char *params[1] = { t->name };
	PGresult *res = PQexecParams(conn, "SELECT format('SELECT pginval.watch("
	    "%L, %L, %L, %L);', $1::text, w.columns, w.channel, w.mode) FROM "
	    "pginval.watched w JOIN pg_class c ON c.oid = w.relid JOIN "
	    "pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname::text || "
	    "'.' || c.relname::text = $1 AND pginval._stale(w.relid, w.columns, "
	    "w.channel, w.mode)", 1, NULL, params, NULL, NULL, 0);
	int problems = 0;

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		problems += check_problem(out, "[table %s]: cannot check its "
		    "triggers: %s; fix: re-run pginval.sql", t->name,
		    check_pgerr(conn));
	else if (PQntuples(res) > 0)
		problems += check_problem(out, "[table %s] lacks some of its "
		    "pginval triggers (dropped by hand?), so some of its changes "
		    "are not sent; fix: %s", t->name, PQgetvalue(res, 0, 0));
	PQclear(res);
	return problems;
}

static int
check_table(PGconn *conn, const struct config *cfg, const struct table_rule *t,
    FILE *out)
{
	const char *params[1] = { t->name };
	const char *cols = rules_columns(t->rules);
	struct buf missing = { 0 }, all = { 0 };
	char *copy, *col, *save = NULL;
	PGresult *res;
	int problems = 0;

	res = PQexecParams(conn, "SELECT columns::text, channel FROM "
	    "pginval.watched_tables WHERE table_name = $1", 1, NULL, params,
	    NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		problems += check_problem(out, "[table %s]: cannot read "
		    "pginval.watched_tables: %s", t->name, check_pgerr(conn));
		goto done;
	}
	/* The templates' columns, as an ARRAY[...] for the fix. */
	copy = xstrdup(cols);
	for (col = strtok_r(copy, ", ", &save); col != NULL;
	    col = strtok_r(NULL, ", ", &save)) {
		struct buf *to = PQntuples(res) == 0 ||
		    check_in_array(conn, PQgetvalue(res, 0, 0), col) ? &all :
		    &missing;

		if (to == &missing) {
			if (missing.len > 0)
				buf_adds(&missing, ", ");
			buf_adds(&missing, col);
		}
		if (all.len > 0)
			buf_adds(&all, ", ");
		buf_addc(&all, '\'');
		buf_adds(&all, col);
		buf_addc(&all, '\'');
	}
	free(copy);
	if (PQntuples(res) == 0) {
		char root[256];

		if (check_covering_root(conn, t->name, root, sizeof(root)) == 0) {
			problems += check_problem(out, "[table %s] (line %d) is a "
			    "partition of %s, which is watched: its changes come "
			    "as %s's, so this section never matches; fix: name "
			    "the section [table %s]", t->name, t->line, root, root,
			    root);
			goto done;
		}
		problems += check_problem(out, "[table %s] (line %d) is not "
		    "watched; fix: SELECT pginval.watch('%s'%s%s%s);", t->name,
		    t->line, t->name, all.len ? ", ARRAY[" : "",
		    all.len ? all.data : "", all.len ? "]" : "");
		goto done;
	}
	if (strcmp(PQgetvalue(res, 0, 1), cfg->pg_channel) != 0)
		problems += check_problem(out, "[table %s] notifies channel "
		    "\"%s\" but [postgres] channel is \"%s\"; fix: SELECT "
		    "pginval.watch('%s', NULL, '%s'); or change channel",
		    t->name, PQgetvalue(res, 0, 1), cfg->pg_channel, t->name,
		    cfg->pg_channel);
	if (missing.len > 0) {
		/* The fix watches what is watched now plus what is missing. */
		const char *p2[2] = { PQgetvalue(res, 0, 0), NULL };
		PGresult *u;

		buf_reset(&all);
		buf_addc(&all, '{');
		buf_adds(&all, missing.data);
		buf_addc(&all, '}');
		p2[1] = all.data;
		u = PQexecParams(conn, "SELECT string_agg(quote_literal(c), ', ' "
		    "ORDER BY o) FROM (SELECT DISTINCT ON (c) c, o FROM "
		    "unnest($1::text[] || $2::text[]) WITH ORDINALITY AS u(c, o) "
		    "ORDER BY c, o) x", 2, NULL, p2, NULL, NULL, 0);
		problems += check_problem(out, "[table %s] keys need column(s) "
		    "%s, which the triggers do not send (watched: %s); fix: "
		    "SELECT pginval.watch('%s', ARRAY[%s]);", t->name,
		    missing.data, PQgetvalue(res, 0, 0), t->name,
		    PQresultStatus(u) == PGRES_TUPLES_OK ? PQgetvalue(u, 0, 0) :
		    "...");
		PQclear(u);
	}
	problems += check_triggers(conn, t, out);
	if (problems == 0)
		fprintf(out, "ok: %s is watched with %s\n", t->name,
		    PQgetvalue(res, 0, 0));
done:
	buf_free(&missing);
	buf_free(&all);
	PQclear(res);
	return problems;
}

/*
 * Partitions of watched roots left uncovered (pginval.uncovered_partitions),
 * and watched roots whose future partitions nothing will cover, for want of
 * the event trigger: their changes would go unseen, in silence.
 */
static int
check_partitions(PGconn *conn, FILE *out)
{
	PGresult *res = PQexec(conn, "SELECT partition, root, reason, fix FROM "
	    "pginval.uncovered_partitions ORDER BY root, partition");
	int problems = 0;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		problems += check_problem(out, "postgres: cannot read "
		    "pginval.uncovered_partitions: %s; fix: re-run pginval.sql, "
		    "and GRANT SELECT ON pginval.uncovered_partitions to the "
		    "daemon's role", check_pgerr(conn));
		goto done;
	}
	for (int i = 0; i < PQntuples(res); i++)
		problems += check_problem(out, "partition %s of watched table %s "
		    "is not covered (%s); fix: %s", PQgetvalue(res, i, 0),
		    PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
		    PQgetvalue(res, i, 3));
	PQclear(res);
	res = PQexec(conn, "SELECT string_agg(n.nspname::text || '.' || "
	    "c.relname::text, ', ' ORDER BY n.nspname, c.relname) FROM pginval.watched w JOIN "
	    "pg_class c ON c.oid = w.relid JOIN pg_namespace n ON n.oid = "
	    "c.relnamespace WHERE c.relkind = 'p' AND EXISTS (SELECT FROM "
	    "pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = 'pginval_ins') "
	    "HAVING NOT EXISTS (SELECT FROM pg_event_trigger WHERE evtname = "
	    "'pginval_partitions' AND evtenabled <> 'D')");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		problems += check_problem(out, "postgres: cannot look for the "
		    "event trigger pginval_partitions: %s", check_pgerr(conn));
		goto done;
	}
	if (PQntuples(res) > 0)
		problems += check_problem(out, "postgres: the partitioned "
		    "table(s) %s are watched, but the event trigger "
		    "pginval_partitions is missing or disabled: partitions "
		    "created or attached from now on will not be covered; fix: "
		    "run pginval.sql as a superuser (or ALTER EVENT TRIGGER "
		    "pginval_partitions ENABLE)", PQgetvalue(res, 0, 0));
	else if (problems == 0)
		fprintf(out, "ok: every partition of a watched table is "
		    "covered\n");
done:
	PQclear(res);
	return problems;
}

/* PostgreSQL's NOTIFY queue, which a stuck listener can fill for every
 * writer of the cluster. */
static int
check_notify_queue(PGconn *conn, const struct config *cfg, FILE *out)
{
	PGresult *res = PQexec(conn, "SELECT "
	    "pg_catalog.pg_notification_queue_usage()");
	double u, warn = cfg->pg_notify_queue_warn;
	int problems = 0;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		problems += check_problem(out, "postgres: cannot read the NOTIFY "
		    "queue usage: %s", check_pgerr(conn));
		goto done;
	}
	u = atof(PQgetvalue(res, 0, 0));
	if (u >= warn)
		problems += check_problem(out, "postgres: the NOTIFY queue is "
		    "%.3g%% full (notify_queue_warn is %.3g%%); when it is full, "
		    "every commit that NOTIFYs fails; fix: end the session that "
		    "LISTENs and stays idle in a transaction (SELECT pid, usename, "
		    "xact_start FROM pg_stat_activity WHERE state = 'idle in "
		    "transaction'), and set idle_in_transaction_session_timeout",
		    100 * u, 100 * warn);
	else
		fprintf(out, "ok: the NOTIFY queue is %.3g%% full (warning at "
		    "%.3g%%)\n", 100 * u, 100 * warn);
done:
	PQclear(res);
	return problems;
}

/* One row of values from sql with the channel and slot as $1 and $2, or
 * NULL after saying why not. */
static PGresult *
check_row(PGconn *conn, const struct config *cfg, const char *sql,
    const char *what, FILE *out, int *problems)
{
	const char *params[2] = { cfg->pg_channel, cfg->pg_slot };
	PGresult *res = PQexecParams(conn, sql, 2, NULL, params, NULL, NULL, 0);

	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		return res;
	*problems += check_problem(out, "postgres: cannot read %s: %s", what,
	    check_pgerr(conn));
	PQclear(res);
	return NULL;
}

/* What wal mode needs of the server, when a table of the channel is in
 * it: each missing piece with its exact fix. */
static int
check_wal(PGconn *conn, const struct config *cfg, FILE *out)
{
	PGresult *res;
	int problems = 0;
	bool have_slot;

	res = check_row(conn, cfg, "SELECT EXISTS (SELECT 1 FROM pginval.watched "
	    "WHERE channel = $1 AND mode = 'wal' AND $2::text IS NOT NULL), "
	    "current_setting('wal_level'), (SELECT rolreplication OR rolsuper "
	    "FROM pg_roles WHERE rolname = current_user), current_user, "
	    "EXISTS (SELECT 1 FROM pg_publication WHERE pubname = "
	    "pginval.publication($1)), pginval.publication($1)",
	    "the wal mode's settings", out, &problems);
	if (res == NULL || strcmp(PQgetvalue(res, 0, 0), "t") != 0)
		goto done;
	if (strcmp(PQgetvalue(res, 0, 1), "logical") != 0)
		problems += check_problem(out, "postgres: wal_level is %s, and "
		    "tables on channel \"%s\" are in wal mode, which needs "
		    "logical; fix: ALTER SYSTEM SET wal_level = logical; then "
		    "restart PostgreSQL", PQgetvalue(res, 0, 1), cfg->pg_channel);
	if (strcmp(PQgetvalue(res, 0, 2), "t") != 0)
		problems += check_problem(out, "postgres: role %s may not stream "
		    "the WAL; fix: ALTER ROLE %s REPLICATION (and allow it a "
		    "replication connection to this database in pg_hba.conf)",
		    PQgetvalue(res, 0, 3), PQgetvalue(res, 0, 3));
	if (strcmp(PQgetvalue(res, 0, 4), "t") != 0)
		problems += check_problem(out, "postgres: publication %s of "
		    "channel \"%s\" is missing; fix: call pginval.watch() again "
		    "on each of its wal tables", PQgetvalue(res, 0, 5),
		    cfg->pg_channel);
	PQclear(res);
	res = check_row(conn, cfg, "SELECT s.slot_name IS NOT NULL, "
	    "s.slot_name IS NULL OR coalesce(s.slot_type = 'logical' AND "
	    "s.plugin = 'pgoutput' AND s.database = current_database(), false), "
	    "s.wal_status, s.active, pg_size_pretty(pg_wal_lsn_diff("
	    "pg_current_wal_lsn(), s.restart_lsn)), "
	    "current_setting('max_replication_slots')::int - (SELECT count(*) "
	    "FROM pg_replication_slots), current_setting('max_wal_senders')::int "
	    "- (SELECT count(*) FROM pg_stat_replication), "
	    "current_setting('max_slot_wal_keep_size') "
	    "FROM (SELECT $1::text) x LEFT JOIN pg_replication_slots s ON "
	    "s.slot_name = $2", "the replication slot", out, &problems);
	if (res == NULL)
		goto done;
	have_slot = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	if (strcmp(PQgetvalue(res, 0, 1), "t") != 0)
		problems += check_problem(out, "postgres: replication slot %s "
		    "exists but is not a pgoutput slot of this database; fix: "
		    "drop it, or set [postgres] slot to another name", cfg->pg_slot);
	else if (!have_slot && atoi(PQgetvalue(res, 0, 5)) <= 0)
		problems += check_problem(out, "postgres: no replication slot is "
		    "free for %s; fix: raise max_replication_slots (ALTER SYSTEM "
		    "SET max_replication_slots = ...; then restart PostgreSQL), or "
		    "drop a slot nobody uses", cfg->pg_slot);
	else if (have_slot && strcmp(PQgetvalue(res, 0, 2), "lost") == 0)
		problems += check_problem(out, "postgres: replication slot %s was "
		    "invalidated: PostgreSQL removed WAL it still needed "
		    "(max_slot_wal_keep_size); the daemon makes it again, with a "
		    "reset of the wal tables", cfg->pg_slot);
	else if (have_slot)
		fprintf(out, "ok: replication slot %s keeps %s of WAL (%s)\n",
		    cfg->pg_slot, PQgetvalue(res, 0, 4),
		    strcmp(PQgetvalue(res, 0, 3), "t") == 0 ? "streaming" :
		    "no daemon streaming it now");
	else
		fprintf(out, "ok: replication slot %s is made at the daemon's "
		    "start (a reset of the wal tables follows)\n", cfg->pg_slot);
	if ((!have_slot || strcmp(PQgetvalue(res, 0, 3), "t") != 0) &&
	    atoi(PQgetvalue(res, 0, 6)) <= 0)
		problems += check_problem(out, "postgres: no WAL sender is free "
		    "for the daemon; fix: raise max_wal_senders (then restart "
		    "PostgreSQL)");
	if (strcmp(PQgetvalue(res, 0, 7), "-1") == 0)
		fprintf(out, "note: max_slot_wal_keep_size is -1: if the daemon "
		    "stops for good, its slot keeps WAL until the disk is full; "
		    "set a bound (ALTER SYSTEM SET max_slot_wal_keep_size = "
		    "'10GB'; SELECT pg_reload_conf())\n");
done:
	PQclear(res);
	return problems;
}

static int
check_postgres(const struct config *cfg, FILE *out)
{
	const char *keys[] = { "connect_timeout", "fallback_application_name",
	    "dbname", cfg->pg_password ? "password" : NULL, NULL };
	const char *vals[] = { "10", "pginval-check", cfg->pg_conninfo,
	    cfg->pg_password, NULL };
	PGconn *conn = PQconnectdbParams(keys, vals, 1);
	PGresult *res = NULL;
	int problems = 0;

	if (PQstatus(conn) != CONNECTION_OK) {
		problems += check_problem(out, "postgres: cannot connect: %s; "
		    "fix [postgres] conninfo in %s", check_pgerr(conn), cfg->path);
		goto done;
	}
	fprintf(out, "ok: connected to postgres %s:%s, database %s\n",
	    PQhost(conn), PQport(conn), PQdb(conn));
	problems += check_notify_queue(conn, cfg, out);
	res = PQexec(conn, PG_CONN_PIN_PATH "SELECT pginval.version()");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		problems += check_problem(out, "postgres: the pginval SQL API is "
		    "not installed in database %s (%s); fix: psql -v "
		    "ON_ERROR_STOP=1 -f share/pginval/pginval.sql", PQdb(conn),
		    check_pgerr(conn));
		goto done;
	}
	if (strcmp(PQgetvalue(res, 0, 0), CHECK_SQL_VERSION) != 0) {
		problems += check_problem(out, "postgres: the SQL API is version "
		    "%s, this pginval needs %s; fix: psql -v ON_ERROR_STOP=1 -f "
		    "share/pginval/pginval.sql", PQgetvalue(res, 0, 0),
		    CHECK_SQL_VERSION);
		goto done;
	}
	fprintf(out, "ok: SQL API version %s installed\n", CHECK_SQL_VERSION);
	PQclear(res);
	res = PQexec(conn, SIGN_KEY_QUERY);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		problems += check_problem(out, "postgres: cannot read the key "
		    "of the payloads' authenticator (%s); fix: GRANT SELECT ON "
		    "pginval.secret TO the daemon's role", PQntuples(res) == 0 &&
		    PQresultStatus(res) == PGRES_TUPLES_OK ? "pginval.secret is "
		    "empty: re-run pginval.sql" : check_pgerr(conn));
	else
		fprintf(out, "ok: the payloads' key is readable\n");
	for (size_t i = 0; i < cfg->ntables; i++)
		problems += check_table(conn, cfg, &cfg->tables[i], out);
	problems += check_partitions(conn, out);
	problems += check_wal(conn, cfg, out);
done:
	PQclear(res);
	PQfinish(conn);
	return problems;
}

int
check_connect(const struct config *cfg, FILE *out)
{
	return check_postgres(cfg, out) + check_redis(cfg, out);
}
