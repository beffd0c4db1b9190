/*
 * The outbox drain. One connection of its own (a transaction held open on
 * the LISTEN connection would hold back NOTIFY delivery), one batch at a
 * time:
 *
 *   IDLE --wake/poll--> FETCHING: BEGIN; SELECT ... FOR UPDATE SKIP LOCKED
 *        --rows handed over--> WAITING for every acknowledgement
 *        --all acked--> DELETING: DELETE ... WHERE id = ANY(...); COMMIT
 *        --> IDLE (and again at once if the batch was full)
 *
 * A batch outlives a lost connection: its rows are unlocked by the
 * server's rollback and will be taken again, while acknowledgements for
 * messages already queued still arrive and are simply counted down.
 *
 * What a batch brings into memory is bounded, whoever wrote the rows:
 * the query locks up to batch rows, but returns only those whose payloads
 * add up to max_batch_bytes (the first one always), and a payload over
 * max_payload is left in the server: the row comes with its size and the
 * table named at its start, and its rows are delivered as a reset.
 */
#include "run/outbox.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/pg_conn.h"
#include "lib/xalloc.h"

#include <ev.h>
#include <stdlib.h>
#include <string.h>

#define OUTBOX_COUNT_EVERY 10.0	/* seconds between backlog counts */
#define OUTBOX_COUNT_CAP "1000000"
/* Where the table of an oversized payload is looked for: its start. */
#define OUTBOX_HEAD_CHARS "4096"

enum outbox_phase {
	OUTBOX_DOWN,
	OUTBOX_SETUP,		/* session settings, stale backend */
	OUTBOX_IDLE,
	OUTBOX_FETCHING,
	OUTBOX_WAITING,
	OUTBOX_DELETING,
	OUTBOX_ROLLING_BACK,
	OUTBOX_COUNTING,
};

struct batch {
	struct batch *next;
	struct outbox *ob;
	unsigned pending;	/* acknowledgements still to come */
	bool abandoned;		/* its transaction is gone */
	bool fetched;		/* every row has been handed over */
};

struct outbox {
	struct ev_loop *loop;
	outbox_row_cb *cb;
	void *arg;
	struct pg_conn *conn;
	char *select_sql;	/* BEGIN; SELECT ..., with the channel quoted */
	char *count_sql;
	int batch_size;
	double ack_timeout;

	enum outbox_phase phase;
	bool deliverable;
	bool again;		/* drain again when idle */
	bool failed;		/* the current query returned an error */
	struct batch *current;
	struct batch *batches;	/* all live batches, for outbox_free */
	struct buf ids;		/* "{1,2,3}" of the current batch */
	int rows;		/* in the current batch */
	long backlog;
	int last_pid;		/* backend of the previous connection */
	ev_tstamp counted_at;
	ev_timer poll;
	ev_timer ack_timer;
};

static void outbox_drain(struct outbox *ob);

static void
batch_unlink_free(struct batch *b)
{
	struct batch **pp;

	for (pp = &b->ob->batches; *pp != NULL; pp = &(*pp)->next)
		if (*pp == b) {
			*pp = b->next;
			break;
		}
	free(b);
}

static void
outbox_send(struct outbox *ob, enum outbox_phase phase, const char *sql)
{
	ob->phase = phase;
	if (pg_conn_query(ob->conn, sql, 0, NULL) == -1)
		ob->phase = OUTBOX_DOWN;	/* reconnecting */
}

/* Every message of the batch is acknowledged: delete its rows. */
static void
outbox_delete(struct outbox *ob)
{
	struct buf q = { 0 };

	ev_timer_stop(ob->loop, &ob->ack_timer);
	buf_adds(&q, "DELETE FROM pginval.outbox WHERE id = ANY('");
	buf_add(&q, ob->ids.data, ob->ids.len);
	buf_adds(&q, "'::bigint[]); COMMIT");
	outbox_send(ob, OUTBOX_DELETING, q.data);
	buf_free(&q);
}

/* A batch whose rows are all handed over and acknowledged is done. */
static void
outbox_batch_check(struct batch *b)
{
	struct outbox *ob = b->ob;

	if (b->pending > 0 || !b->fetched)
		return;
	if (ob->current == b && ob->phase == OUTBOX_WAITING) {
		ob->current = NULL;
		batch_unlink_free(b);
		outbox_delete(ob);
	} else if (b->abandoned) {
		batch_unlink_free(b);
	}
}

static void
outbox_acked(void *arg)
{
	struct batch *b = arg;

	if (b->pending > 0)
		b->pending--;
	outbox_batch_check(b);
}

/* The batch will not be deleted by this transaction. */
static void
outbox_abandon(struct outbox *ob)
{
	struct batch *b = ob->current;

	ob->current = NULL;
	ev_timer_stop(ob->loop, &ob->ack_timer);
	if (b == NULL)
		return;
	b->abandoned = true;
	b->fetched = true;
	outbox_batch_check(b);
}

/* Columns: id, payload (NULL when oversized), its size, the table of an
 * oversized one, and how many rows the query locked. */
static void
outbox_rows(struct outbox *ob, const PGresult *res)
{
	struct outbox_ack ack = { outbox_acked, ob->current };

	for (int i = 0; i < PQntuples(res); i++) {
		struct outbox_row row = {
			.payload = PQgetisnull(res, i, 1) ? NULL :
			    PQgetvalue(res, i, 1),
			.len = strtoull(PQgetvalue(res, i, 2), NULL, 10),
			.table = PQgetisnull(res, i, 3) ? NULL :
			    PQgetvalue(res, i, 3),
		};

		if (row.payload != NULL)
			row.len = (size_t)PQgetlength(res, i, 1);
		buf_addc(&ob->ids, ob->rows++ == 0 ? '{' : ',');
		buf_adds(&ob->ids, PQgetvalue(res, i, 0));
		if (ob->cb(ob->arg, &row, &ack))
			ob->current->pending++;
	}
	if (ob->rows > 0 && PQntuples(res) > 0)
		buf_addc(&ob->ids, '}');
	/* Rows left out for the byte limit: drain again at once. */
	if (PQntuples(res) > 0 && atol(PQgetvalue(res, 0, 4)) > PQntuples(res))
		ob->again = true;
}

static void
outbox_result(struct outbox *ob, const PGresult *res)
{
	char err[256];

	switch (PQresultStatus(res)) {
	case PGRES_FATAL_ERROR:
		log_error("outbox: %s failed: %s", ob->phase == OUTBOX_DELETING ?
		    "delete" : ob->phase == OUTBOX_FETCHING ? "drain" :
		    ob->phase == OUTBOX_SETUP ? "session setup" : "count",
		    pg_conn_error(ob->conn, err, sizeof(err)));
		ob->failed = true;
		break;
	case PGRES_TUPLES_OK:
		if (ob->phase == OUTBOX_FETCHING)
			outbox_rows(ob, res);
		else if (ob->phase == OUTBOX_COUNTING)
			ob->backlog = atol(PQgetvalue(res, 0, 0));
		break;
	default:
		break;
	}
}

static void
outbox_done(struct outbox *ob)
{
	bool failed = ob->failed;

	ob->failed = false;
	switch (ob->phase) {
	case OUTBOX_FETCHING:
		if (failed || ob->rows == 0) {
			/* Nothing taken: end the transaction, wait. */
			outbox_abandon(ob);
			outbox_send(ob, OUTBOX_ROLLING_BACK, "ROLLBACK");
			return;
		}
		ob->phase = OUTBOX_WAITING;
		ob->again = ob->again || ob->rows >= ob->batch_size;
		ob->current->fetched = true;
		ev_timer_set(&ob->ack_timer, ob->ack_timeout, 0);
		ev_timer_start(ob->loop, &ob->ack_timer);
		outbox_batch_check(ob->current);
		return;
	case OUTBOX_DELETING:
		if (failed) {
			outbox_send(ob, OUTBOX_ROLLING_BACK, "ROLLBACK");
			return;
		}
		log_debug("outbox: delivered and deleted %d rows", ob->rows);
		break;
	case OUTBOX_SETUP:
		/* A failure here (no right to end the old session) only
		 * delays its rows until the server ends it. */
		log_info("outbox: connected (%s:%s); draining "
		    "pginval.outbox", PQhost(pg_conn_pq(ob->conn)),
		    PQport(pg_conn_pq(ob->conn)));
		ob->again = true;	/* catch up */
		break;
	default:
		break;
	}
	ob->phase = OUTBOX_IDLE;
	if (ob->again)
		outbox_drain(ob);
}

/*
 * A connection that died in the middle of a batch may live on at the
 * server, idle in its transaction and holding the batch's row locks (a
 * network that vanished sends no FIN). The server is told to end such
 * sessions on its own, and the previous one is ended now if it is still
 * there, so that its rows can be taken again at once.
 */
static void
outbox_setup(struct outbox *ob)
{
	struct buf q = { 0 };
	char sql[320];

	snprintf(sql, sizeof(sql), PG_CONN_PIN_PATH "SET "
	    "idle_in_transaction_session_timeout = %d; SELECT "
	    "pg_terminate_backend(pid) FROM pg_stat_activity "
	    "WHERE pid = %d AND state LIKE 'idle in transaction%%'",
	    (int)(ob->ack_timeout * 2000), ob->last_pid);
	buf_adds(&q, sql);
	ob->last_pid = PQbackendPID(pg_conn_pq(ob->conn));
	outbox_send(ob, OUTBOX_SETUP, q.data);
	buf_free(&q);
}

static void
outbox_conn_cb(void *arg, enum pg_conn_event ev, const PGresult *res,
    const PGnotify *n)
{
	struct outbox *ob = arg;

	switch (ev) {
	case PG_CONN_EVENT_UP:
		ob->failed = false;
		outbox_setup(ob);
		break;
	case PG_CONN_EVENT_RESULT:
		outbox_result(ob, res);
		break;
	case PG_CONN_EVENT_DONE:
		outbox_done(ob);
		break;
	case PG_CONN_EVENT_NOTIFY:
		break;
	case PG_CONN_EVENT_COPY:	/* no COPY is started */
		break;
	case PG_CONN_EVENT_DOWN:
		outbox_abandon(ob);
		if (pg_conn_pq(ob->conn) == NULL)
			log_debug("outbox: connection lost");
		ob->phase = OUTBOX_DOWN;
		ob->again = true;	/* catch up after the reconnect */
		break;
	}
}

/* Takes the next batch, if the connection and Redis allow. */
static void
outbox_drain(struct outbox *ob)
{
	ev_tstamp now = ev_now(ob->loop);

	if (ob->phase != OUTBOX_IDLE || !pg_conn_ready(ob->conn)) {
		ob->again = true;
		return;
	}
	if (!ob->deliverable) {
		ob->again = true;
		if (now - ob->counted_at >= OUTBOX_COUNT_EVERY) {
			ob->counted_at = now;
			outbox_send(ob, OUTBOX_COUNTING, ob->count_sql);
		}
		return;
	}
	ob->again = false;
	if (now - ob->counted_at >= OUTBOX_COUNT_EVERY) {
		ob->counted_at = now;
		ob->again = true;
		outbox_send(ob, OUTBOX_COUNTING, ob->count_sql);
		return;
	}
	ob->current = xcalloc(1, sizeof(*ob->current));
	ob->current->ob = ob;
	ob->current->next = ob->batches;
	ob->batches = ob->current;
	ob->rows = 0;
	buf_reset(&ob->ids);
	outbox_send(ob, OUTBOX_FETCHING, ob->select_sql);
}

static void
outbox_poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	outbox_drain(w->data);
}

static void
outbox_ack_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct outbox *ob = w->data;

	if (ob->phase != OUTBOX_WAITING)
		return;
	log_warnx("outbox: %d rows not acknowledged by Redis within %.0fs; "
	    "releasing them to be taken again", ob->rows, ob->ack_timeout);
	outbox_abandon(ob);
	outbox_send(ob, OUTBOX_ROLLING_BACK, "ROLLBACK");
}

struct outbox *
outbox_new(struct ev_loop *loop, const struct outbox_opts *o,
    outbox_row_cb *cb, void *arg)
{
	struct outbox *ob = xcalloc(1, sizeof(*ob));
	struct pg_conn_opts co = {
		.name = "outbox", .conninfo = o->conninfo,
		.connect_timeout = o->connect_timeout,
		.query_timeout = o->query_timeout,
		.password = o->password,
		.reconnect_min = o->reconnect_min,
		.reconnect_max = o->reconnect_max,
	};
	struct buf q = { 0 };
	char num[32], cap[32], bytes[32];
	char *lit;

	ob->loop = loop;
	ob->cb = cb;
	ob->arg = arg;
	ob->batch_size = o->batch;
	ob->ack_timeout = o->ack_timeout;
	ob->backlog = -1;
	ob->counted_at = -OUTBOX_COUNT_EVERY;
	ob->conn = pg_conn_new(loop, &co, outbox_conn_cb, ob);

	/* The channel is a literal in a simple-protocol query; quote it
	 * the standard way (standard_conforming_strings is on since 9.1). */
	buf_addc(&q, '\'');
	for (const char *p = o->channel; *p != '\0'; p++) {
		if (*p == '\'')
			buf_addc(&q, '\'');
		buf_addc(&q, *p);
	}
	buf_addc(&q, '\'');
	lit = buf_steal(&q);
	snprintf(num, sizeof(num), "%d", o->batch);
	snprintf(cap, sizeof(cap), "%zu", o->max_payload);
	snprintf(bytes, sizeof(bytes), "%zu", o->max_batch_bytes);
	/* octet_length() reads no TOASTed value, and substr() only the
	 * slice it needs. */
	buf_adds(&q, "BEGIN; SELECT id, CASE WHEN len <= ");
	buf_adds(&q, cap);
	buf_adds(&q, " THEN payload END, len, CASE WHEN len > ");
	buf_adds(&q, cap);
	buf_adds(&q, " THEN substring(substr(payload, 1, " OUTBOX_HEAD_CHARS
	    ") FROM '\"t\":\"((?:[^\"\\\\]|\\\\.)*)\"') END, locked "
	    "FROM (SELECT id, payload, len, count(*) OVER () AS locked, "
	    "sum(least(len, ");
	buf_adds(&q, cap);
	buf_adds(&q, ")) OVER (ORDER BY id) - least(len, ");
	buf_adds(&q, cap);
	buf_adds(&q, ") AS before FROM (SELECT id, payload, "
	    "octet_length(payload) AS len FROM pginval.outbox WHERE channel = ");
	buf_adds(&q, lit);
	buf_adds(&q, " ORDER BY id LIMIT ");
	buf_adds(&q, num);
	buf_adds(&q, " FOR UPDATE SKIP LOCKED) l) w WHERE before = 0 OR "
	    "before + least(len, ");
	buf_adds(&q, cap);
	buf_adds(&q, ") <= ");
	buf_adds(&q, bytes);
	buf_adds(&q, " ORDER BY id");
	ob->select_sql = buf_steal(&q);
	buf_adds(&q, "SELECT count(*) FROM (SELECT 1 FROM pginval.outbox WHERE "
	    "channel = ");
	buf_adds(&q, lit);
	buf_adds(&q, " LIMIT " OUTBOX_COUNT_CAP ") x");
	ob->count_sql = buf_steal(&q);
	free(lit);

	ev_timer_init(&ob->poll, outbox_poll_cb, o->poll_interval,
	    o->poll_interval);
	ob->poll.data = ob;
	ev_timer_init(&ob->ack_timer, outbox_ack_timeout_cb, 0, 0);
	ob->ack_timer.data = ob;
	return ob;
}

void
outbox_start(struct outbox *ob)
{
	pg_conn_start(ob->conn);
	ev_timer_start(ob->loop, &ob->poll);
}

void
outbox_stop(struct outbox *ob)
{
	ev_timer_stop(ob->loop, &ob->poll);
	ev_timer_stop(ob->loop, &ob->ack_timer);
	outbox_abandon(ob);
	pg_conn_stop(ob->conn);
	ob->phase = OUTBOX_DOWN;
}

void
outbox_free(struct outbox *ob)
{
	struct batch *b;

	if (ob == NULL)
		return;
	outbox_stop(ob);
	pg_conn_free(ob->conn);
	while ((b = ob->batches) != NULL) {
		ob->batches = b->next;
		free(b);
	}
	buf_free(&ob->ids);
	free(ob->select_sql);
	free(ob->count_sql);
	free(ob);
}

void
outbox_kick(struct outbox *ob)
{
	outbox_drain(ob);
}

void
outbox_set_deliverable(struct outbox *ob, bool yes)
{
	ob->deliverable = yes;
	if (yes)
		outbox_drain(ob);
}

long
outbox_backlog(const struct outbox *ob)
{
	return ob->backlog;
}

bool
outbox_up(const struct outbox *ob)
{
	return ob->phase != OUTBOX_DOWN;
}

bool
outbox_idle(const struct outbox *ob)
{
	return ob->current == NULL && ob->phase != OUTBOX_WAITING;
}

int
outbox_backend(const struct outbox *ob)
{
	return ob->last_pid;
}

void
outbox_follows(struct outbox *ob, int backend)
{
	ob->last_pid = backend;
}
