/*
 * The WAL source, built on pg_conn: the stream. After each connect,
 * wal_slot.c brings the replication session to START_REPLICATION; from
 * there the stream is read message by message (wal_rel.h turns them into
 * events), and stops being read while the owner is full.
 *
 * Transactions are kept in arrival order with the number of their
 * events not yet acknowledged; the front ones that are committed and
 * fully acknowledged advance the confirmed position. A transaction cut
 * by a lost link never commits here: the server sends it again whole.
 */
#include "run/wal_int.h"
#include "core/pgoutput.h"
#include "core/wal_rel.h"
#include "lib/buf.h"
#include "lib/fifo.h"
#include "lib/log.h"
#include "lib/pg_conn.h"
#include "lib/xalloc.h"

#include <ev.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAL_STATUS_TICK 1.0	/* how often the status timer looks */
#define WAL_STATUS_EVERY 10.0	/* status at least this often */
#define WAL_MESSAGE_PREFIX "pginval"	/* of the triggers' messages */
/* A link reads the map again only once it has streamed this long (as
 * long as pg_conn takes a link to be good, so that the reconnect does
 * not back off). */
#define WAL_REREAD_AFTER 10.0

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
void
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

void
wal_tell(struct wal_source *ws, enum wal_item_kind kind)
{
	struct wal_item it = { .kind = kind };

	ws->cb(ws->arg, &it, NULL);
}

void
wal_fail(struct wal_source *ws, const char *fmt, ...)
{
	char why[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	pg_conn_fail(ws->conn, why);
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
 * table, by a link that has streamed a while; else its keys are unknown.
 * A link that just began read the map moments ago: the tables it does not
 * know (added to the publication by hand, a thousand in a transaction)
 * must not each cost a reconnect, backing off ever longer while nothing
 * of the channel is delivered. Returns false if the link was dropped. */
static bool
wal_stale(struct wal_source *ws, uint32_t relid, int64_t ts)
{
	char why[200];
	const char *table = wal_rels_table(ws->rels, relid);
	struct wal_item it = {
		.kind = WAL_ITEM_RESET, .table = table, .why = why, .ts = ts,
	};

	if (ev_now(ws->loop) - ws->streamed_at >= WAL_REREAD_AFTER &&
	    !wal_was_stale(ws, relid)) {
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
		wal_tell(ws, WAL_ITEM_BEGIN);
		return true;
	}
	case 'C':
		ws->cur->end_lsn = m.end_lsn;
		ws->cur->committed = true;
		ws->cur = NULL;
		ws->stats.transactions++;
		wal_tell(ws, WAL_ITEM_COMMIT);
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
	case 'M':
		if (strcmp(m.prefix, WAL_MESSAGE_PREFIX) != 0)
			return true;
		/* The triggers write theirs in the transaction; one outside
		 * any is someone else's, whatever it says. */
		if (m.transactional && ws->cur != NULL) {
			struct wal_item it = {
				.kind = WAL_ITEM_PAYLOAD, .payload = m.content,
				.len = m.content_len,
			};

			wal_hand(ws, &it, ws->cur);
		} else if (ws->forged != NULL) {
			(*ws->forged)++;
		}
		return true;
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
			const char *state = res ? PQresultErrorField(res,
			    PG_DIAG_SQLSTATE) : NULL;
			char why[300];

			/* undefined_object: pgoutput's "publication ... does
			 * not exist" (wal_slot.c makes the slot again). */
			if (state != NULL && strcmp(state, "42704") == 0 &&
			    strstr(wal_res_error(res), "publication") != NULL)
				ws->pub_gone = true;

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
	ws->streamed_before = opts->streamed_before;
	snprintf(ws->slot, sizeof(ws->slot), "%s", opts->slot);
	ws->health_interval = opts->health_interval;
	ws->forged = opts->forged;
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

bool
wal_source_streamed(const struct wal_source *ws)
{
	return ws->last_pid != 0 || ws->streamed_before;
}
