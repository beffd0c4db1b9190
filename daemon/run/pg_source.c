/*
 * PostgreSQL source, built on pg_conn. After each connect it sends LISTEN
 * (the channel quoted with PQescapeIdentifier), then asks the registry
 * whether any table on the channel is in notify mode: only those lose
 * changes while nobody listens, so only then must the owner announce a
 * reset. Then it reads the key of the payloads' authenticator (sign.h),
 * again at every connect. Notifications are passed up as they arrive,
 * except two kinds that pginval sends to itself: "wake" (a durable table's
 * trigger wrote to the outbox) and the health probe.
 */
#include "run/pg_source.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/pg_conn.h"
#include "core/sign.h"
#include "lib/xalloc.h"

#include <ev.h>
#include <stdlib.h>
#include <string.h>

#define PROBE_PAYLOAD "pginval-probe"
#define WAKE_PAYLOAD "wake"
/* Whether tables on the channel ($1) are in wal mode, and a size of the
 * slot ($3): the WAL written since one of its positions. */
#define PG_SOURCE_WAL_TABLES "EXISTS (SELECT 1 FROM pginval.watched " \
	"WHERE channel = $1 AND mode = 'wal')"
#define PG_SOURCE_SLOT_SIZE(lsn) "(SELECT pg_wal_lsn_diff(" \
	"pg_current_wal_lsn(), " lsn ") FROM pg_replication_slots " \
	"WHERE slot_name = $3)"

enum pg_phase {
	PG_PHASE_NONE,
	PG_PHASE_LISTEN,	/* LISTEN sent */
	PG_PHASE_MODES,		/* registry query sent */
	PG_PHASE_KEY,		/* key query sent */
	PG_PHASE_LISTENING,
};

struct pg_source {
	struct ev_loop *loop;
	pg_source_cb *cb;
	void *arg;
	struct pg_conn *conn;
	char *channel;
	char *slot;
	double health_interval;
	bool wal_tables;
	double slot_retained, slot_unconfirmed;
	bool stopped;

	enum pg_phase phase;
	bool lossy;
	struct sign_key *key;	/* read at each connect; NULL before */
	ev_timer probe;		/* sends a probe every health_interval */
	ev_tstamp probe_sent;	/* 0: none outstanding */
	double queue_usage;	/* read by the probe; -1: not yet */
};

static const char *const pg_state_names[] = {
	[PG_STATE_STOPPED] = "stopped", [PG_STATE_CONNECTING] = "connecting",
	[PG_STATE_SUBSCRIBING] = "subscribing",
	[PG_STATE_LISTENING] = "listening", [PG_STATE_BACKOFF] = "backoff",
};

const char *
pg_state_name(enum pg_state st)
{
	return pg_state_names[st];
}

enum pg_state
pg_source_state(const struct pg_source *src)
{
	if (src->stopped)
		return PG_STATE_STOPPED;
	if (pg_conn_connecting(src->conn))
		return PG_STATE_CONNECTING;
	if (!pg_conn_up(src->conn))
		return PG_STATE_BACKOFF;
	return src->phase == PG_PHASE_LISTENING ? PG_STATE_LISTENING :
	    PG_STATE_SUBSCRIBING;
}

bool
pg_source_lossy(const struct pg_source *src)
{
	return src->lossy;
}

struct sign_key *
pg_source_key(const struct pg_source *src)
{
	return src->key;
}

static void
pg_source_send_listen(struct pg_source *src)
{
	PGconn *pq = pg_conn_pq(src->conn);
	char *ident = PQescapeIdentifier(pq, src->channel, strlen(src->channel));
	struct buf q = { 0 };
	int rc;

	if (ident == NULL) {
		pg_conn_fail(src->conn, "cannot quote the channel name");
		return;
	}
	buf_adds(&q, PG_CONN_PIN_PATH "LISTEN ");
	buf_adds(&q, ident);
	PQfreemem(ident);
	src->phase = PG_PHASE_LISTEN;
	rc = pg_conn_query(src->conn, q.data, 0, NULL);
	buf_free(&q);
	(void)rc;	/* on failure a reconnect is already scheduled */
}

/* Without the key no payload can be trusted: the link is dropped and
 * tried again (with backoff) until the installation is fixed. */
static void
pg_source_key_result(struct pg_source *src, const PGresult *res)
{
	struct sign_key *key;
	char why[512];

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(why, sizeof(why), "cannot read the payloads' key in "
		    "pginval.secret (%s); fix: install pginval.sql version 3 "
		    "and GRANT SELECT ON pginval.secret TO this role",
		    PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) ?
		    PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : "error");
		pg_conn_fail(src->conn, why);
	} else if (PQntuples(res) != 1 || PQnfields(res) != 2 ||
	    (key = sign_key_new(PQgetvalue(res, 0, 0),
	    PQgetvalue(res, 0, 1))) == NULL) {
		pg_conn_fail(src->conn, "pginval.secret holds no usable key; "
		    "fix: re-run pginval.sql, which makes one");
	} else {
		sign_key_free(src->key);
		src->key = key;
	}
}

/* A number of the probe's row, or -1. */
static double
pg_source_number(const PGresult *res, int col)
{
	char *end;
	double v;

	if (PQgetisnull(res, 0, col))
		return -1;
	v = strtod(PQgetvalue(res, 0, col), &end);
	return *end == '\0' && v >= 0 ? v : -1;
}

/* The probe's columns after pg_notify(): pg_notification_queue_usage(),
 * whether tables are in wal mode, and the slot's sizes. */
static void
pg_source_queue_result(struct pg_source *src, const PGresult *res)
{
	double u;

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
	    PQnfields(res) != 5 || (u = pg_source_number(res, 1)) < 0)
		return;
	src->queue_usage = u;
	src->wal_tables = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
	src->slot_retained = pg_source_number(res, 3);
	src->slot_unconfirmed = pg_source_number(res, 4);
	src->cb(src->arg, PG_EVENT_QUEUE_USAGE, NULL, 0);
}

bool
pg_source_wal_tables(const struct pg_source *src)
{
	return src->wal_tables;
}

void
pg_source_slot_sizes(const struct pg_source *src, double *retained,
    double *unconfirmed)
{
	*retained = src->slot_retained;
	*unconfirmed = src->slot_unconfirmed;
}

double
pg_source_queue_usage(const struct pg_source *src)
{
	return src->queue_usage;
}

static void
pg_source_result(struct pg_source *src, const PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);

	switch (src->phase) {
	case PG_PHASE_LISTEN:
		if (st != PGRES_COMMAND_OK)
			pg_conn_fail(src->conn, "LISTEN failed");
		break;
	case PG_PHASE_MODES:
		/* No registry (an older SQL API) counts as lossy. */
		src->lossy = st != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
		    PQnfields(res) != 2 || strcmp(PQgetvalue(res, 0, 0), "f") != 0;
		src->wal_tables = st == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
		    PQnfields(res) == 2 && strcmp(PQgetvalue(res, 0, 1), "t") == 0;
		break;
	case PG_PHASE_KEY:
		pg_source_key_result(src, res);
		break;
	default:
		pg_source_queue_result(src, res);	/* a probe's result */
		break;
	}
}

static void
pg_source_done(struct pg_source *src)
{
	const char *params[1] = { src->channel };
	PGconn *pq = pg_conn_pq(src->conn);

	switch (src->phase) {
	case PG_PHASE_LISTEN:
		src->phase = PG_PHASE_MODES;
		src->lossy = true;
		if (pg_conn_query(src->conn, "SELECT EXISTS (SELECT 1 FROM "
		    "pginval.watched WHERE channel = $1 AND mode = 'notify'), "
		    PG_SOURCE_WAL_TABLES, 1, params) == -1)
			return;
		break;
	case PG_PHASE_MODES:
		src->phase = PG_PHASE_KEY;
		if (pg_conn_query(src->conn, SIGN_KEY_QUERY, 0, NULL) == -1)
			return;
		break;
	case PG_PHASE_KEY:
		src->phase = PG_PHASE_LISTENING;
		log_info("postgres: listening on channel \"%s\" (%s:%s, "
		    "database %s)", src->channel, PQhost(pq), PQport(pq),
		    PQdb(pq));
		src->probe_sent = 0;
		if (src->health_interval > 0) {
			ev_timer_set(&src->probe, src->health_interval,
			    src->health_interval);
			ev_timer_start(src->loop, &src->probe);
		}
		src->cb(src->arg, PG_EVENT_LISTENING, NULL, 0);
		break;
	default:
		break;
	}
}

static void
pg_source_notify(struct pg_source *src, const PGnotify *n)
{
	PGconn *pq = pg_conn_pq(src->conn);

	if (strcmp(n->extra, PROBE_PAYLOAD) == 0) {
		/* Another daemon's probe on a shared channel is ignored. */
		if (pq != NULL && n->be_pid == PQbackendPID(pq))
			src->probe_sent = 0;
		return;
	}
	if (strcmp(n->extra, WAKE_PAYLOAD) == 0) {
		src->cb(src->arg, PG_EVENT_WAKE, NULL, 0);
		return;
	}
	src->cb(src->arg, PG_EVENT_NOTIFY, n->extra, strlen(n->extra));
}

static void
pg_source_conn_cb(void *arg, enum pg_conn_event ev, const PGresult *res,
    const PGnotify *n)
{
	struct pg_source *src = arg;

	switch (ev) {
	case PG_CONN_EVENT_UP:
		pg_source_send_listen(src);
		break;
	case PG_CONN_EVENT_RESULT:
		pg_source_result(src, res);
		break;
	case PG_CONN_EVENT_DONE:
		pg_source_done(src);
		break;
	case PG_CONN_EVENT_NOTIFY:
		if (src->phase == PG_PHASE_LISTENING)
			pg_source_notify(src, n);
		break;
	case PG_CONN_EVENT_COPY:	/* no COPY is started */
		break;
	case PG_CONN_EVENT_DOWN: {
		bool was_listening = src->phase == PG_PHASE_LISTENING;

		src->phase = PG_PHASE_NONE;
		ev_timer_stop(src->loop, &src->probe);
		if (was_listening)
			src->cb(src->arg, PG_EVENT_LOST, NULL, 0);
		break;
	}
	}
}

/* Sends a self-NOTIFY; the previous one must have come back by now. */
static void
pg_source_probe_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct pg_source *src = w->data;
	const char *params[3] = { src->channel, PROBE_PAYLOAD, src->slot };

	if (src->probe_sent > 0) {
		char why[96];

		snprintf(why, sizeof(why), "health probe not answered in %.1fs",
		    ev_now(loop) - src->probe_sent);
		pg_conn_fail(src->conn, why);
		return;
	}
	if (!pg_conn_ready(src->conn))
		return;	/* busy: try at the next tick */
	if (pg_conn_query(src->conn, "SELECT pg_notify($1, $2), "
	    "pg_catalog.pg_notification_queue_usage(), " PG_SOURCE_WAL_TABLES
	    ", " PG_SOURCE_SLOT_SIZE("restart_lsn") ", "
	    PG_SOURCE_SLOT_SIZE("confirmed_flush_lsn"), 3, params) == 0)
		src->probe_sent = ev_now(loop);
}

struct pg_source *
pg_source_new(struct ev_loop *loop, const struct pg_source_opts *opts,
    pg_source_cb *cb, void *arg)
{
	struct pg_source *src = xcalloc(1, sizeof(*src));
	struct pg_conn_opts co = {
		.name = "postgres", .conninfo = opts->conninfo,
		.connect_timeout = opts->connect_timeout,
		.query_timeout = opts->query_timeout,
		.password = opts->password,
		.reconnect_min = opts->reconnect_min,
		.reconnect_max = opts->reconnect_max,
	};

	src->loop = loop;
	src->cb = cb;
	src->arg = arg;
	src->channel = xstrdup(opts->channel);
	src->slot = xstrdup(opts->slot ? opts->slot : "");
	src->slot_retained = src->slot_unconfirmed = -1;
	src->health_interval = opts->health_interval;
	src->stopped = true;
	src->lossy = true;
	src->queue_usage = -1;
	src->conn = pg_conn_new(loop, &co, pg_source_conn_cb, src);
	ev_timer_init(&src->probe, pg_source_probe_cb, 0, 0);
	src->probe.data = src;
	return src;
}

void
pg_source_start(struct pg_source *src)
{
	src->stopped = false;
	pg_conn_start(src->conn);
}

void
pg_source_stop(struct pg_source *src)
{
	src->stopped = true;
	src->phase = PG_PHASE_NONE;
	ev_timer_stop(src->loop, &src->probe);
	pg_conn_stop(src->conn);
}

void
pg_source_free(struct pg_source *src)
{
	if (src == NULL)
		return;
	ev_timer_stop(src->loop, &src->probe);
	pg_conn_free(src->conn);
	sign_key_free(src->key);
	free(src->channel);
	free(src->slot);
	free(src);
}
