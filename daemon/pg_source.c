/*
 * PostgreSQL source. The connection is made with PQconnectStartParams and
 * PQconnectPoll, driven by one ev_io watcher whose socket is re-read after
 * every poll (libpq may move to another socket while trying hosts). Once
 * connected it sends LISTEN, then reads notifications as they arrive:
 * PQconsumeInput, then PQnotifies until empty. Any failure tears the
 * connection down and schedules a reconnect with jittered backoff; the
 * owner learns of it through PG_EVENT_LOST and of the recovery through
 * PG_EVENT_LISTENING, after which it must announce that events may have
 * been missed.
 */
#include "pg_source.h"
#include "backoff.h"
#include "buf.h"
#include "log.h"

#include <ev.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct pg_source {
	struct ev_loop *loop;
	pg_source_cb *cb;
	void *arg;
	char *conninfo;
	char *channel;
	double connect_timeout;
	struct backoff backoff;

	enum pg_state state;
	PGconn *conn;
	ev_io io;
	ev_timer timer;		/* connect timeout, or backoff */
};

static void pg_source_connect(struct pg_source *src);

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

static void
pg_source_set_state(struct pg_source *src, enum pg_state st)
{
	if (src->state == st)
		return;
	log_debug("postgres: %s -> %s", pg_state_names[src->state],
	    pg_state_names[st]);
	src->state = st;
}

/* Arms the io watcher on the connection's current socket. */
static void
pg_source_watch(struct pg_source *src, int events)
{
	ev_io_stop(src->loop, &src->io);
	ev_io_set(&src->io, PQsocket(src->conn), events);
	ev_io_start(src->loop, &src->io);
}

/* libpq messages end with a newline and may span lines; keep one line. */
static const char *
pg_source_errmsg(struct pg_source *src, char *out, size_t outlen)
{
	const char *m = src->conn ? PQerrorMessage(src->conn) : "";
	size_t j = 0;

	for (size_t i = 0; m[i] != '\0' && j + 1 < outlen; i++) {
		char c = (m[i] == '\n' || m[i] == '\t') ? ' ' : m[i];

		if (c != ' ' || (j > 0 && out[j - 1] != ' '))
			out[j++] = c;
	}
	while (j > 0 && out[j - 1] == ' ')
		j--;
	out[j] = '\0';
	return j > 0 ? out : "connection closed";
}

/* Server notices (and a FATAL sent before the connection closes) go to
 * the log rather than straight to stderr. */
static void
pg_source_notice(void *arg, const char *message)
{
	size_t n = strlen(message);

	while (n > 0 && (message[n - 1] == '\n' || message[n - 1] == ' '))
		n--;
	log_warnx("postgres: server says: %.*s", (int)n, message);
}

static void
pg_source_close(struct pg_source *src)
{
	ev_io_stop(src->loop, &src->io);
	ev_timer_stop(src->loop, &src->timer);
	if (src->conn != NULL) {
		PQfinish(src->conn);
		src->conn = NULL;
	}
}

/* Drops the connection and schedules the next attempt. */
static void
pg_source_fail(struct pg_source *src, const char *what)
{
	char msg[512];
	bool was_up = src->state == PG_STATE_LISTENING;
	double delay;

	pg_source_errmsg(src, msg, sizeof(msg));
	pg_source_close(src);
	delay = backoff_next(&src->backoff);
	log_warnx("postgres: %s: %s; retrying in %.1fs", what, msg, delay);
	pg_source_set_state(src, PG_STATE_BACKOFF);
	ev_timer_set(&src->timer, delay, 0);
	ev_timer_start(src->loop, &src->timer);
	if (was_up)
		src->cb(src->arg, PG_EVENT_LOST, NULL, 0);
}

static void
pg_source_send_listen(struct pg_source *src)
{
	char *ident = PQescapeIdentifier(src->conn, src->channel,
	    strlen(src->channel));
	struct buf q = { 0 };
	int ok;

	if (ident == NULL) {
		pg_source_fail(src, "cannot quote the channel name");
		return;
	}
	buf_adds(&q, "LISTEN ");
	buf_adds(&q, ident);
	PQfreemem(ident);
	ok = PQsendQuery(src->conn, q.data);
	buf_free(&q);
	if (!ok) {
		pg_source_fail(src, "cannot send LISTEN");
		return;
	}
	pg_source_set_state(src, PG_STATE_SUBSCRIBING);
	pg_source_watch(src, PQflush(src->conn) == 1 ? EV_READ | EV_WRITE : EV_READ);
}

/* Handles query results; only LISTEN's is expected. Returns -1 if the
 * connection failed. */
static int
pg_source_results(struct pg_source *src)
{
	PGresult *res;

	while (!PQisBusy(src->conn) && (res = PQgetResult(src->conn)) != NULL) {
		ExecStatusType st = PQresultStatus(res);

		PQclear(res);
		if (st != PGRES_COMMAND_OK) {
			pg_source_fail(src, "LISTEN failed");
			return -1;
		}
		if (src->state == PG_STATE_SUBSCRIBING) {
			pg_source_set_state(src, PG_STATE_LISTENING);
			backoff_reset(&src->backoff);
			log_info("postgres: listening on channel \"%s\" (%s:%s, "
			    "database %s)", src->channel, PQhost(src->conn),
			    PQport(src->conn), PQdb(src->conn));
			src->cb(src->arg, PG_EVENT_LISTENING, NULL, 0);
			if (src->state != PG_STATE_LISTENING)
				return -1;
		}
	}
	return 0;
}

static void
pg_source_read(struct pg_source *src)
{
	PGnotify *n;

	if (!PQconsumeInput(src->conn)) {
		pg_source_fail(src, "connection lost");
		return;
	}
	if (pg_source_results(src) == -1)
		return;
	while (src->state == PG_STATE_LISTENING &&
	    (n = PQnotifies(src->conn)) != NULL) {
		src->cb(src->arg, PG_EVENT_NOTIFY, n->extra, strlen(n->extra));
		PQfreemem(n);
	}
}

static void
pg_source_poll(struct pg_source *src)
{
	switch (PQconnectPoll(src->conn)) {
	case PGRES_POLLING_READING:
		pg_source_watch(src, EV_READ);
		break;
	case PGRES_POLLING_WRITING:
		pg_source_watch(src, EV_WRITE);
		break;
	case PGRES_POLLING_OK:
		ev_timer_stop(src->loop, &src->timer);
		if (PQsetnonblocking(src->conn, 1) != 0) {
			pg_source_fail(src, "cannot set non-blocking mode");
			return;
		}
		pg_source_send_listen(src);
		break;
	default:
		pg_source_fail(src, "cannot connect");
		break;
	}
}

static void
pg_source_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct pg_source *src = w->data;

	switch (src->state) {
	case PG_STATE_CONNECTING:
		pg_source_poll(src);
		break;
	case PG_STATE_SUBSCRIBING:
	case PG_STATE_LISTENING:
		if (revents & EV_WRITE) {
			int r = PQflush(src->conn);

			if (r == -1) {
				pg_source_fail(src, "write failed");
				return;
			}
			if (r == 0)
				pg_source_watch(src, EV_READ);
		}
		if (revents & EV_READ)
			pg_source_read(src);
		break;
	default:
		ev_io_stop(loop, w);
		break;
	}
}

static void
pg_source_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct pg_source *src = w->data;

	if (src->state == PG_STATE_BACKOFF) {
		pg_source_connect(src);
	} else if (src->state == PG_STATE_CONNECTING ||
	    src->state == PG_STATE_SUBSCRIBING) {
		/* libpq ignores connect_timeout in non-blocking mode. */
		pg_source_fail(src, "timed out connecting");
	}
}

static void
pg_source_connect(struct pg_source *src)
{
	/* Keywords before dbname are defaults the conninfo may override;
	 * those after it are required by pginval. */
	const char *keys[] = {
		"fallback_application_name", "keepalives", "keepalives_idle",
		"keepalives_interval", "keepalives_count", "tcp_user_timeout",
		"dbname", "client_encoding", NULL,
	};
	const char *vals[] = {
		"pginval", "1", "30", "10", "3", "60000",
		src->conninfo, "UTF8", NULL,
	};

	pg_source_set_state(src, PG_STATE_CONNECTING);
	src->conn = PQconnectStartParams(keys, vals, 1);
	if (src->conn == NULL || PQstatus(src->conn) == CONNECTION_BAD) {
		pg_source_fail(src, "cannot connect");
		return;
	}
	PQsetNoticeProcessor(src->conn, pg_source_notice, src);
	ev_timer_set(&src->timer, src->connect_timeout, 0);
	ev_timer_start(src->loop, &src->timer);
	pg_source_watch(src, EV_WRITE);
}

struct pg_source *
pg_source_new(struct ev_loop *loop, const struct pg_source_opts *opts,
    pg_source_cb *cb, void *arg)
{
	struct pg_source *src = xcalloc(1, sizeof(*src));

	src->loop = loop;
	src->cb = cb;
	src->arg = arg;
	src->conninfo = xstrdup(opts->conninfo);
	src->channel = xstrdup(opts->channel);
	src->connect_timeout = opts->connect_timeout;
	src->backoff.min = opts->reconnect_min;
	src->backoff.max = opts->reconnect_max;
	ev_io_init(&src->io, pg_source_io_cb, -1, EV_READ);
	src->io.data = src;
	ev_timer_init(&src->timer, pg_source_timer_cb, 0, 0);
	src->timer.data = src;
	return src;
}

void
pg_source_start(struct pg_source *src)
{
	if (src->state == PG_STATE_STOPPED)
		pg_source_connect(src);
}

void
pg_source_stop(struct pg_source *src)
{
	pg_source_close(src);
	pg_source_set_state(src, PG_STATE_STOPPED);
}

void
pg_source_free(struct pg_source *src)
{
	if (src == NULL)
		return;
	pg_source_close(src);
	free(src->conninfo);
	free(src->channel);
	free(src);
}

enum pg_state
pg_source_state(const struct pg_source *src)
{
	return src->state;
}
