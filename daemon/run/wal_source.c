/*
 * The WAL source, built on pg_conn. After each connect, on the one
 * replication connection: the session's settings, the slot's state and
 * the channel's publication and watched columns (pginval.wal_columns()),
 * then the slot made when missing or invalidated, then START_REPLICATION.
 * The stream is read message by message (wal_rel.h turns them into
 * events), and stops being read while the owner is full.
 *
 * Transactions are kept in arrival order with the number of their
 * events not yet acknowledged; the front ones that are committed and
 * fully acknowledged advance the confirmed position. A transaction cut
 * by a lost link never commits here: the server sends it again whole.
 */
#include "run/wal_source.h"
#include "core/pgoutput.h"
#include "core/wal_rel.h"
#include "lib/buf.h"
#include "lib/fifo.h"
#include "lib/log.h"
#include "lib/pg_conn.h"
#include "lib/xalloc.h"

#include <ev.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAL_STATUS_TICK 1.0	/* how often the status timer looks */
#define WAL_STATUS_EVERY 10.0	/* status at least this often */
#define WAL_SLOT_TIMEOUT 600.0	/* creating a slot waits for transactions */
#define WAL_MAX_STALE 64	/* tables for which the map was read again */

enum wal_phase {
	WAL_PHASE_NONE,
	WAL_PHASE_SETUP,	/* settings, slot, publication, columns */
	WAL_PHASE_DROP,		/* dropping an invalidated slot */
	WAL_PHASE_CREATE,	/* creating the slot */
	WAL_PHASE_START,	/* START_REPLICATION sent */
	WAL_PHASE_STREAMING,
};

struct wal_txn {
	struct fifo_node node;	/* first */
	struct wal_source *ws;
	uint64_t end_lsn;	/* 0: cut by a lost link, confirms nothing */
	int64_t ts;
	ev_tstamp received;	/* when its Begin came */
	unsigned pending;	/* events taken, not yet acknowledged */
	bool committed;
};

struct wal_source {
	struct ev_loop *loop;
	wal_source_cb *cb;
	wal_source_full_cb *full;
	void *arg;
	struct pg_conn *conn;
	char *channel;
	char slot[64];
	double health_interval;
	bool stopped;

	enum wal_phase phase;
	int nresult;		/* SETUP: the results read so far */
	char *publication;
	bool slot_missing, slot_lost;
	uint64_t slot_flush;	/* the slot's confirmed_flush_lsn */
	struct wal_rels *rels;
	struct buf tables;	/* the wal tables' names, NUL-separated */
	size_t ntables;

	struct fifo txns;	/* received, not yet confirmed */
	struct wal_txn *cur;	/* the open transaction */
	uint64_t flush;		/* confirmed (or to be) */
	uint64_t flush_sent;	/* as last told to the server */
	ev_tstamp status_at, heard_at;
	ev_timer status;
	uint32_t stale[WAL_MAX_STALE];
	size_t nstale;
	bool paused;

	struct wal_source_stats stats;
};

static uint64_t
wal_get64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void
wal_put64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
}

static uint64_t
wal_parse_lsn(const char *s)
{
	unsigned int hi, lo;

	if (s == NULL || sscanf(s, "%X/%X", &hi, &lo) != 2)
		return 0;
	return (uint64_t)hi << 32 | lo;
}

/* Now as PostgreSQL counts it: µs since 2000-01-01. */
static int64_t
wal_pg_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 -
	    PGO_EPOCH_US;
}

/* A Standby Status Update: what was received, and what is confirmed. */
static void
wal_send_status(struct wal_source *ws, bool reply)
{
	unsigned char msg[34];
	PGconn *pq = pg_conn_pq(ws->conn);

	if (ws->phase != WAL_PHASE_STREAMING || pq == NULL)
		return;
	msg[0] = 'r';
	wal_put64(msg + 1, ws->stats.received_lsn > ws->flush ?
	    ws->stats.received_lsn : ws->flush);
	wal_put64(msg + 9, ws->flush);
	wal_put64(msg + 17, ws->flush);
	wal_put64(msg + 25, (uint64_t)wal_pg_now());
	msg[33] = reply;
	if (PQputCopyData(pq, (const char *)msg, sizeof(msg)) != 1) {
		pg_conn_fail(ws->conn, "cannot send status to the server");
		return;
	}
	if (pg_conn_flush(ws->conn) == -1)
		return;
	ws->flush_sent = ws->flush;
	ws->status_at = ev_now(ws->loop);
	ws->stats.confirmed_lsn = ws->flush;
}

/* Confirms the front transactions that are done. */
static void
wal_advance(struct wal_source *ws)
{
	struct wal_txn *t;

	while ((t = (struct wal_txn *)ws->txns.head) != NULL &&
	    t->committed && t->pending == 0) {
		fifo_pop(&ws->txns);
		if (t->end_lsn > ws->flush)
			ws->flush = t->end_lsn;
		free(t);
	}
	/* Stopped, and everything taken is confirmed: the slot is free for
	 * whoever streams it next. */
	if (ws->stopped && ws->txns.head == NULL &&
	    ws->phase == WAL_PHASE_STREAMING) {
		wal_send_status(ws, false);
		ev_timer_stop(ws->loop, &ws->status);
		pg_conn_stop(ws->conn);
		ws->phase = WAL_PHASE_NONE;
	}
}

static void
wal_ack(void *arg)
{
	struct wal_txn *t = arg;
	struct wal_source *ws = t->ws;

	t->pending--;
	wal_advance(ws);
	if (ws->paused && !ws->stopped && !ws->full(ws->arg)) {
		ws->paused = false;
		pg_conn_pause(ws->conn, false);
	}
}

static bool
wal_hand(struct wal_source *ws, const struct wal_item *it,
    struct wal_txn *t)
{
	struct wal_ack ack = { wal_ack, t };

	if (!ws->cb(ws->arg, it, &ack))
		return false;
	t->pending++;
	return true;
}

/* An item outside any transaction (a reset at the slot's creation): its
 * own transaction, which confirms nothing. */
static void
wal_hand_alone(struct wal_source *ws, const struct wal_item *it)
{
	struct wal_txn *t = xcalloc(1, sizeof(*t));

	t->ws = ws;
	t->committed = true;
	fifo_push(&ws->txns, &t->node);
	wal_hand(ws, it, t);
	wal_advance(ws);
}

/* A reset of every table watched in wal mode: the changes before the
 * slot's consistent point are unknown. */
static void
wal_reset_tables(struct wal_source *ws, const char *why)
{
	const char *name = ws->tables.data;

	log_warnx("wal: %s; resetting the %zu tables watched in wal mode",
	    why, ws->ntables);
	for (size_t i = 0; i < ws->ntables; i++) {
		struct wal_item it = {
			.kind = WAL_ITEM_RESET, .table = name, .why = why,
		};

		wal_hand_alone(ws, &it);
		name += strlen(name) + 1;
	}
}

static void
wal_tell(struct wal_source *ws, enum wal_item_kind kind)
{
	struct wal_item it = { .kind = kind };

	ws->cb(ws->arg, &it, NULL);
}

static void wal_fail(struct wal_source *ws, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
wal_fail(struct wal_source *ws, const char *fmt, ...)
{
	char why[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	pg_conn_fail(ws->conn, why);
}

/* Appends s to q as a quoted SQL literal. */
static int
wal_literal(struct wal_source *ws, struct buf *q, const char *s)
{
	char *lit = PQescapeLiteral(pg_conn_pq(ws->conn), s, strlen(s));

	if (lit == NULL) {
		pg_conn_fail(ws->conn, "cannot quote a literal");
		return -1;
	}
	buf_adds(q, lit);
	PQfreemem(lit);
	return 0;
}

static void
wal_send(struct wal_source *ws, enum wal_phase phase, const char *sql)
{
	ws->phase = phase;
	if (pg_conn_query(ws->conn, sql, 0, NULL) == -1)
		return;		/* a reconnect is scheduled */
}

static void
wal_setup(struct wal_source *ws)
{
	struct buf q = { 0 };

	/* Values come as their text output; the ISO DateStyle is the one
	 * wal_rel.c rewrites into to_jsonb()'s. */
	buf_adds(&q, PG_CONN_PIN_PATH "SET DateStyle = ISO; "
	    "SELECT pginval.publication(");
	if (wal_literal(ws, &q, ws->channel) == -1)
		goto out;
	buf_adds(&q, "), s.slot_type, s.plugin, s.database = "
	    "current_database(), s.wal_status, s.confirmed_flush_lsn "
	    "FROM (SELECT) x LEFT JOIN pg_replication_slots s "
	    "ON s.slot_name = ");
	if (wal_literal(ws, &q, ws->slot) == -1)
		goto out;
	buf_adds(&q, "; SELECT relid, table_name, col, typid, class "
	    "FROM pginval.wal_columns(");
	if (wal_literal(ws, &q, ws->channel) == -1)
		goto out;
	buf_adds(&q, ")");
	ws->nresult = 0;
	wal_rels_clear(ws->rels);
	buf_reset(&ws->tables);
	ws->ntables = 0;
	wal_send(ws, WAL_PHASE_SETUP, q.data);
out:
	buf_free(&q);
}

static const char *
wal_res_error(const PGresult *res)
{
	const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	return m != NULL ? m : PQresStatus(PQresultStatus(res));
}

/* The slot's state: made when missing, again when invalidated; one of
 * another kind is not pginval's to touch. */
static void
wal_slot_result(struct wal_source *ws, const PGresult *res)
{
	const char *type, *plugin;

	if (PQntuples(res) != 1 || PQnfields(res) != 6) {
		pg_conn_fail(ws->conn, "unexpected reply about the slot");
		return;
	}
	free(ws->publication);
	ws->publication = xstrdup(PQgetvalue(res, 0, 0));
	ws->slot_missing = PQgetisnull(res, 0, 1);
	ws->slot_lost = false;
	if (ws->slot_missing)
		return;
	type = PQgetvalue(res, 0, 1);
	plugin = PQgetvalue(res, 0, 2);
	if (strcmp(type, "logical") != 0 || strcmp(plugin, "pgoutput") != 0 ||
	    strcmp(PQgetvalue(res, 0, 3), "t") != 0) {
		wal_fail(ws, "replication slot \"%s\" exists but is not a "
		    "pgoutput slot of this database: pginval leaves it alone; "
		    "drop it, or set [postgres] slot to another name",
		    ws->slot);
		return;
	}
	ws->slot_lost = strcmp(PQgetvalue(res, 0, 4), "lost") == 0;
	ws->slot_flush = wal_parse_lsn(PQgetvalue(res, 0, 5));
}

static void
wal_columns_result(struct wal_source *ws, const PGresult *res)
{
	const char *last = NULL;

	if (PQnfields(res) != 5) {
		pg_conn_fail(ws->conn, "unexpected reply from "
		    "pginval.wal_columns()");
		return;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		const char *table = PQgetvalue(res, i, 1);

		wal_rels_watch(ws->rels, (uint32_t)strtoul(PQgetvalue(res, i, 0),
		    NULL, 10), PQgetvalue(res, i, 2),
		    (uint32_t)strtoul(PQgetvalue(res, i, 3), NULL, 10),
		    wal_class_parse(PQgetisnull(res, i, 4) ? NULL :
		    PQgetvalue(res, i, 4)));
		if (last == NULL || strcmp(last, table) != 0) {
			buf_add(&ws->tables, table, strlen(table) + 1);
			ws->ntables++;
		}
		last = table;
	}
}

static void wal_streaming(struct wal_source *ws);

static void
wal_result(struct wal_source *ws, const PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);

	switch (ws->phase) {
	case WAL_PHASE_SETUP:
		if (st == PGRES_COMMAND_OK)
			return;		/* the SETs */
		if (st != PGRES_TUPLES_OK) {
			wal_fail(ws, "cannot read the slot and the wal tables "
			    "(%s); fix: install pginval.sql version 3, and "
			    "check that the role may use replication",
			    wal_res_error(res));
			return;
		}
		if (ws->nresult++ == 0)
			wal_slot_result(ws, res);
		else
			wal_columns_result(ws, res);
		return;
	case WAL_PHASE_DROP:
	case WAL_PHASE_CREATE:
		if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
			wal_fail(ws, "cannot create replication slot \"%s\": "
			    "%s", ws->slot, wal_res_error(res));
		/* The slot starts at its consistent point. */
		else if (ws->phase == WAL_PHASE_CREATE && PQnfields(res) >= 2 &&
		    PQntuples(res) == 1)
			ws->slot_flush = wal_parse_lsn(PQgetvalue(res, 0, 1));
		return;
	case WAL_PHASE_START:
		if (st == PGRES_COPY_BOTH) {
			wal_streaming(ws);
			return;
		}
		wal_fail(ws, "cannot stream from replication slot \"%s\": %s",
		    ws->slot, wal_res_error(res));
		return;
	default:
		return;
	}
}

static void
wal_start(struct wal_source *ws)
{
	struct buf q = { 0 }, names = { 0 };

	/* publication_names is a list of identifiers, in a literal. */
	buf_addc(&names, '"');
	for (const char *p = ws->publication; *p != '\0'; p++) {
		if (*p == '"')
			buf_addc(&names, '"');
		buf_addc(&names, *p);
	}
	buf_addc(&names, '"');
	buf_addc(&names, '\0');
	buf_adds(&q, "START_REPLICATION SLOT \"");
	buf_adds(&q, ws->slot);
	buf_adds(&q, "\" LOGICAL 0/0 (proto_version '1', publication_names ");
	if (wal_literal(ws, &q, names.data) == 0) {
		buf_adds(&q, ")");
		wal_send(ws, WAL_PHASE_START, q.data);
	}
	buf_free(&names);
	buf_free(&q);
}

static void
wal_streaming(struct wal_source *ws)
{
	PGconn *pq = pg_conn_pq(ws->conn);

	ws->phase = WAL_PHASE_STREAMING;
	if (ws->slot_flush > ws->flush)
		ws->flush = ws->slot_flush;
	ws->heard_at = ws->status_at = ev_now(ws->loop);
	log_info("wal: streaming slot \"%s\", publication \"%s\" (%s:%s, "
	    "database %s), from %X/%X; %zu tables", ws->slot, ws->publication,
	    PQhost(pq), PQport(pq), PQdb(pq), (unsigned)(ws->flush >> 32),
	    (unsigned)ws->flush, ws->ntables);
	wal_tell(ws, WAL_ITEM_STREAMING);
}

static void
wal_done(struct wal_source *ws)
{
	char sql[200];

	switch (ws->phase) {
	case WAL_PHASE_SETUP:
		if (ws->slot_lost) {
			log_warnx("wal: replication slot \"%s\" was invalidated "
			    "(PostgreSQL removed WAL it still needed: see "
			    "max_slot_wal_keep_size); making it again", ws->slot);
			snprintf(sql, sizeof(sql), "DROP_REPLICATION_SLOT \"%s\"",
			    ws->slot);
			wal_send(ws, WAL_PHASE_DROP, sql);
			return;
		}
		if (!ws->slot_missing) {
			wal_start(ws);
			return;
		}
		/* FALLTHROUGH */
	case WAL_PHASE_DROP:
		log_info("wal: creating replication slot \"%s\" (it waits for "
		    "the transactions in progress to end)", ws->slot);
		snprintf(sql, sizeof(sql), "CREATE_REPLICATION_SLOT \"%s\" "
		    "LOGICAL pgoutput NOEXPORT_SNAPSHOT", ws->slot);
		pg_conn_set_query_timeout(ws->conn, WAL_SLOT_TIMEOUT);
		wal_send(ws, WAL_PHASE_CREATE, sql);
		break;
	case WAL_PHASE_CREATE:
		pg_conn_set_query_timeout(ws->conn, ws->health_interval > 0 ?
		    2 * ws->health_interval : 0);
		ws->stats.slots_created++;
		wal_reset_tables(ws, ws->slot_lost ? "the replication slot was "
		    "invalidated: changes may have been missed" :
		    "the replication slot was made: changes made before it "
		    "are unknown");
		ws->slot_lost = ws->slot_missing = false;
		wal_start(ws);
		break;
	default:
		break;
	}
}

static bool
wal_was_stale(struct wal_source *ws, uint32_t relid)
{
	for (size_t i = 0; i < ws->nstale; i++)
		if (ws->stale[i] == relid)
			return true;
	if (ws->nstale == WAL_MAX_STALE)
		return true;	/* enough: no more reconnects for this */
	ws->stale[ws->nstale++] = relid;
	return false;
}

/* A table the map read at connect does not know, or not as it is now:
 * watched since, or its type altered. The map is read again, once per
 * table; after that, its keys are unknown. Returns false if the link
 * was dropped for it. */
static bool
wal_stale(struct wal_source *ws, uint32_t relid, int64_t ts)
{
	char why[200];
	const char *table = wal_rels_table(ws->rels, relid);
	struct wal_item it = {
		.kind = WAL_ITEM_RESET, .table = table, .why = why, .ts = ts,
	};

	if (!wal_was_stale(ws, relid)) {
		snprintf(why, sizeof(why), "table %s (OID %u) changed since "
		    "pginval.wal_columns() was read; reading it again",
		    table ? table : "?", relid);
		pg_conn_fail(ws->conn, why);
		return false;
	}
	snprintf(why, sizeof(why), "table %s is in the publication but its "
	    "watched columns are not known: call pginval.watch() on it",
	    table ? table : "?");
	if (table != NULL)
		wal_hand(ws, &it, ws->cur);
	return true;
}

static bool
wal_change(struct wal_source *ws, const struct pgo_msg *m)
{
	struct event ev;
	char why[400];
	struct wal_item it = { .kind = WAL_ITEM_EVENT, .ev = &ev };

	switch (wal_rels_event(ws->rels, m, ws->cur->ts, &ev, why,
	    sizeof(why))) {
	case WAL_EVENT_OK:
		ws->stats.changes++;
		wal_hand(ws, &it, ws->cur);
		return true;
	case WAL_EVENT_STALE:
		return wal_stale(ws, m->relid, ws->cur->ts);
	case WAL_EVENT_UNKNOWN:
		it.kind = WAL_ITEM_RESET;
		it.table = wal_rels_table(ws->rels, m->relid);
		it.why = why;
		it.ts = ws->cur->ts;
		wal_hand(ws, &it, ws->cur);
		return true;
	case WAL_EVENT_BAD:
		break;
	}
	wal_fail(ws, "a change the server sent cannot be read (%s)", why);
	return false;
}

static bool
wal_truncate(struct wal_source *ws, const struct pgo_msg *m)
{
	for (uint32_t i = 0; i < m->nrelids; i++) {
		uint32_t relid = pgo_trunc_relid(m, i);
		struct event ev = {
			.op = EVENT_TRUNCATE, .ts = ws->cur->ts,
			.table = wal_rels_table(ws->rels, relid),
		};
		struct wal_item it = { .kind = WAL_ITEM_EVENT, .ev = &ev };

		if (!wal_rels_watched(ws->rels, relid) || ev.table == NULL) {
			if (!wal_stale(ws, relid, ev.ts))
				return false;
			continue;
		}
		ws->stats.truncates++;
		wal_hand(ws, &it, ws->cur);
	}
	return true;
}

/* One pgoutput message. Returns false when the link was dropped. */
static bool
wal_message(struct wal_source *ws, const unsigned char *p, size_t len)
{
	struct pgo_msg m;
	char err[200];

	if (pgo_parse(p, len, &m, err, sizeof(err)) == -1) {
		wal_fail(ws, "the server sent a message that cannot be read "
		    "(%s)", err);
		return false;
	}
	if (m.kind != 'B' && m.kind != 'R' && ws->cur == NULL &&
	    strchr("CIUDT", m.kind) != NULL) {
		pg_conn_fail(ws->conn, "the server sent a change outside a "
		    "transaction");
		return false;
	}
	switch (m.kind) {
	case 'B': {
		struct wal_txn *t = xcalloc(1, sizeof(*t));

		t->ws = ws;
		t->ts = m.ts;
		t->received = ev_now(ws->loop);
		fifo_push(&ws->txns, &t->node);
		ws->cur = t;
		return true;
	}
	case 'C':
		log_debug("wal: commit %X/%X", (unsigned)(m.end_lsn >> 32),
		    (unsigned)m.end_lsn);
		ws->cur->end_lsn = m.end_lsn;
		ws->cur->committed = true;
		ws->cur = NULL;
		ws->stats.transactions++;
		wal_advance(ws);
		return true;
	case 'R':
		if (wal_rels_relation(ws->rels, &m, err, sizeof(err)) == -1) {
			wal_fail(ws, "a relation the server sent cannot be "
			    "read (%s)", err);
			return false;
		}
		return true;
	case 'I':
	case 'U':
	case 'D':
		return wal_change(ws, &m);
	case 'T':
		return wal_truncate(ws, &m);
	default:
		return true;
	}
}

/* One CopyData message of the stream. */
static bool
wal_copy_data(struct wal_source *ws, const unsigned char *p, size_t len)
{
	ws->heard_at = ev_now(ws->loop);
	if (len >= 25 && p[0] == 'w') {
		uint64_t start = wal_get64(p + 1);

		if (start > ws->stats.received_lsn)
			ws->stats.received_lsn = start;
		return wal_message(ws, p + 25, len - 25);
	}
	if (len >= 18 && p[0] == 'k') {
		uint64_t end = wal_get64(p + 1);

		/* Everything before end was sent: with nothing open or
		 * waiting, there is nothing of ours before it. */
		if (ws->cur == NULL && ws->txns.head == NULL && end > ws->flush) {
			log_debug("wal: keepalive at %X/%X, nothing pending",
			    (unsigned)(end >> 32), (unsigned)end);
			ws->flush = end;
		}
		if (end > ws->stats.received_lsn)
			ws->stats.received_lsn = end;
		if (p[17])
			wal_send_status(ws, false);
		return true;
	}
	pg_conn_fail(ws->conn, "the server sent an unknown message in the "
	    "stream");
	return false;
}

static void
wal_read(struct wal_source *ws)
{
	PGconn *pq = pg_conn_pq(ws->conn);
	char *data;
	int n;

	while (ws->phase == WAL_PHASE_STREAMING) {
		if (ws->full(ws->arg)) {
			ws->paused = true;
			pg_conn_pause(ws->conn, true);
			return;
		}
		n = PQgetCopyData(pq, &data, 1);
		if (n == 0)
			return;
		if (n < 0) {
			PGresult *res = PQgetResult(pq);
			char why[300];

			snprintf(why, sizeof(why), "the stream ended (%s)",
			    res ? wal_res_error(res) : "connection lost");
			PQclear(res);
			pg_conn_fail(ws->conn, why);
			return;
		}
		if (!wal_copy_data(ws, (const unsigned char *)data, (size_t)n)) {
			PQfreemem(data);
			return;
		}
		PQfreemem(data);
	}
}

static void
wal_conn_cb(void *arg, enum pg_conn_event ev, const PGresult *res,
    const PGnotify *n)
{
	struct wal_source *ws = arg;

	(void)n;
	switch (ev) {
	case PG_CONN_EVENT_UP:
		wal_setup(ws);
		break;
	case PG_CONN_EVENT_RESULT:
		wal_result(ws, res);
		break;
	case PG_CONN_EVENT_DONE:
		wal_done(ws);
		break;
	case PG_CONN_EVENT_COPY:
		wal_read(ws);
		break;
	case PG_CONN_EVENT_NOTIFY:
		break;
	case PG_CONN_EVENT_DOWN: {
		bool was = ws->phase == WAL_PHASE_STREAMING;

		ws->phase = WAL_PHASE_NONE;
		ws->paused = false;
		/* Cut short: the server sends it again, whole. */
		if (ws->cur != NULL) {
			ws->cur->committed = true;
			ws->cur->end_lsn = 0;
			ws->cur = NULL;
			wal_advance(ws);
		}
		if (was)
			wal_tell(ws, WAL_ITEM_LOST);
		break;
	}
	}
}

static void
wal_status_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct wal_source *ws = w->data;
	ev_tstamp now = ev_now(loop);
	double every = ws->health_interval > 0 &&
	    ws->health_interval < WAL_STATUS_EVERY ? ws->health_interval :
	    WAL_STATUS_EVERY;

	(void)revents;
	if (ws->phase != WAL_PHASE_STREAMING)
		return;
	if (ws->paused)
		ws->heard_at = now;	/* nothing is read while paused */
	if (ws->health_interval > 0 &&
	    now - ws->heard_at > 2 * ws->health_interval) {
		char why[100];

		snprintf(why, sizeof(why), "no word from the server in %.1fs",
		    now - ws->heard_at);
		pg_conn_fail(ws->conn, why);
		return;
	}
	if (now - ws->status_at >= every)
		wal_send_status(ws, ws->health_interval > 0);
	else if (ws->flush != ws->flush_sent)
		wal_send_status(ws, false);
}

struct wal_source *
wal_source_new(struct ev_loop *loop, const struct wal_source_opts *opts,
    wal_source_cb *cb, wal_source_full_cb *full, void *arg)
{
	struct wal_source *ws = xcalloc(1, sizeof(*ws));
	struct pg_conn_opts co = {
		.name = "wal", .conninfo = opts->conninfo,
		.password = opts->password,
		.connect_timeout = opts->connect_timeout,
		.query_timeout = opts->health_interval > 0 ?
		    2 * opts->health_interval : 0,
		.reconnect_min = opts->reconnect_min,
		.reconnect_max = opts->reconnect_max,
		.replication = true,
	};

	ws->loop = loop;
	ws->cb = cb;
	ws->full = full;
	ws->arg = arg;
	ws->channel = xstrdup(opts->channel);
	snprintf(ws->slot, sizeof(ws->slot), "%s", opts->slot);
	ws->health_interval = opts->health_interval;
	ws->stopped = true;
	ws->rels = wal_rels_new();
	ws->conn = pg_conn_new(loop, &co, wal_conn_cb, ws);
	ev_timer_init(&ws->status, wal_status_cb, WAL_STATUS_TICK,
	    WAL_STATUS_TICK);
	ws->status.data = ws;
	return ws;
}

void
wal_source_start(struct wal_source *ws)
{
	ws->stopped = false;
	ev_timer_start(ws->loop, &ws->status);
	pg_conn_start(ws->conn);
}

void
wal_source_stop(struct wal_source *ws)
{
	if (ws->stopped)
		return;
	ws->stopped = true;
	/* Still streaming, so that what Redis acknowledges is confirmed;
	 * but nothing more is read. */
	if (ws->phase == WAL_PHASE_STREAMING) {
		ws->paused = true;
		pg_conn_pause(ws->conn, true);
		wal_advance(ws);
	} else {
		ev_timer_stop(ws->loop, &ws->status);
		pg_conn_stop(ws->conn);
		ws->phase = WAL_PHASE_NONE;
	}
}

void
wal_source_free(struct wal_source *ws)
{
	struct fifo_node *n;

	if (ws == NULL)
		return;
	/* A last word: what was acknowledged is confirmed. */
	if (ws->flush != ws->flush_sent)
		wal_send_status(ws, false);
	ev_timer_stop(ws->loop, &ws->status);
	pg_conn_free(ws->conn);
	while ((n = fifo_pop(&ws->txns)) != NULL)
		free(n);
	wal_rels_free(ws->rels);
	buf_free(&ws->tables);
	free(ws->publication);
	free(ws->channel);
	free(ws);
}

bool
wal_source_streaming(const struct wal_source *ws)
{
	return ws->phase == WAL_PHASE_STREAMING;
}

size_t
wal_source_pending(const struct wal_source *ws)
{
	return ws->txns.n;
}

double
wal_source_lag(const struct wal_source *ws)
{
	const struct wal_txn *t = (const struct wal_txn *)ws->txns.head;

	return t != NULL ? ev_now(ws->loop) - t->received : 0;
}

const struct wal_source_stats *
wal_source_stats(const struct wal_source *ws)
{
	return &ws->stats;
}
