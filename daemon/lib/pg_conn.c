/*
 * A libpq connection driven by libev. Connecting uses PQconnectStartParams
 * and PQconnectPoll; the socket is re-read after every poll, since libpq
 * may move to another socket while it tries the hosts of a multi-host
 * conninfo. Reading is PQconsumeInput, then every complete result, then
 * every notification (PQnotifies never reads the socket itself). Any
 * failure closes the connection and arms a jittered backoff timer; the
 * owner never handles a lost connection as an error, only as an event.
 *
 * Callbacks may end the connection; a generation number tells the loops
 * here when the connection they were reading has gone.
 */
#include "lib/pg_conn.h"
#include "lib/backoff.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum pg_conn_state {
	PG_CONN_STOPPED,
	PG_CONN_CONNECTING,
	PG_CONN_READY,
	PG_CONN_BACKOFF,
};

struct pg_conn {
	struct ev_loop *loop;
	pg_conn_cb *cb;
	void *arg;
	char *name;
	char *conninfo;
	char *password;
	bool replication;
	char tcp[4][16];	/* keepalives idle, interval, count; user timeout */
	double connect_timeout;
	double query_timeout;
	struct backoff backoff;

	enum pg_conn_state state;
	PGconn *conn;
	bool busy;		/* a query is in progress */
	bool copy;		/* in COPY BOTH mode */
	bool paused;		/* COPY: the owner takes no input now */
	bool writing;		/* output waits for the socket */
	ev_tstamp up_at;	/* when it last connected */
	unsigned first_host;	/* hosts skipped at the start of the list */
	unsigned gen;		/* bumped whenever conn is closed */
	ev_io io;
	ev_timer timer;		/* connect timeout, or backoff */
	ev_timer resume;	/* a COPY event after pg_conn_pause(false) */
};

#define PG_CONN_STABLE 10.0	/* seconds up that count as a good link */

static void pg_conn_connect(struct pg_conn *c);

const char *
pg_conn_error(struct pg_conn *c, char *out, size_t outlen)
{
	const char *m = c->conn ? PQerrorMessage(c->conn) : "";
	size_t j = 0;

	/* libpq messages end with a newline and may span lines. */
	for (size_t i = 0; m[i] != '\0' && j + 1 < outlen; i++) {
		char ch = (m[i] == '\n' || m[i] == '\t') ? ' ' : m[i];

		if (ch != ' ' || (j > 0 && out[j - 1] != ' '))
			out[j++] = ch;
	}
	while (j > 0 && out[j - 1] == ' ')
		j--;
	out[j] = '\0';
	return j > 0 ? out : "connection closed";
}

/* Server notices (and a FATAL sent just before the server closes the
 * connection) go to the log rather than straight to stderr. */
static void
pg_conn_notice(void *arg, const char *message)
{
	struct pg_conn *c = arg;
	size_t n = strlen(message);

	while (n > 0 && (message[n - 1] == '\n' || message[n - 1] == ' '))
		n--;
	log_warnx("%s: server says: %.*s", c->name, (int)n, message);
}

static void
pg_conn_watch(struct pg_conn *c, int events)
{
	ev_io_stop(c->loop, &c->io);
	if (c->state == PG_CONN_READY) {
		events = (c->paused ? 0 : EV_READ) | (c->writing ? EV_WRITE : 0);
		if (events == 0)
			return;
	}
	ev_io_set(&c->io, PQsocket(c->conn), events);
	ev_io_start(c->loop, &c->io);
}

static void
pg_conn_close(struct pg_conn *c)
{
	ev_io_stop(c->loop, &c->io);
	ev_timer_stop(c->loop, &c->timer);
	ev_timer_stop(c->loop, &c->resume);
	if (c->conn != NULL) {
		PQfinish(c->conn);
		c->conn = NULL;
	}
	c->busy = c->copy = c->paused = c->writing = false;
	c->gen++;
}

void
pg_conn_fail(struct pg_conn *c, const char *why)
{
	char msg[512];
	bool was_up = c->state == PG_CONN_READY;
	double delay;

	if (c->state == PG_CONN_STOPPED || c->state == PG_CONN_BACKOFF)
		return;
	pg_conn_error(c, msg, sizeof(msg));
	pg_conn_close(c);
	/* Only a link that lasted starts the backoff afresh: one that fails
	 * right after connecting (a missing grant, a LISTEN refused) is
	 * retried ever more slowly, not ten times a second. */
	if (was_up && ev_now(c->loop) - c->up_at >= PG_CONN_STABLE)
		backoff_reset(&c->backoff);
	delay = backoff_next(&c->backoff);
	log_warnx("%s: %s: %s; retrying in %.1fs", c->name, why, msg, delay);
	c->state = PG_CONN_BACKOFF;
	ev_timer_set(&c->timer, delay, 0);
	ev_timer_start(c->loop, &c->timer);
	if (was_up)
		c->cb(c->arg, PG_CONN_EVENT_DOWN, NULL, NULL);
}

/* Delivers complete results, then notifications, while c stays alive. */
static void
pg_conn_deliver(struct pg_conn *c)
{
	unsigned gen = c->gen;
	PGresult *res;
	PGnotify *n;

	while (c->gen == gen && c->busy && !PQisBusy(c->conn)) {
		res = PQgetResult(c->conn);
		if (res == NULL) {
			c->busy = false;
			ev_timer_stop(c->loop, &c->timer);
			c->cb(c->arg, PG_CONN_EVENT_DONE, NULL, NULL);
			break;
		}
		/* COPY BOTH lasts until the owner ends it: no more results
		 * (PQgetResult would return the same status again). */
		if (PQresultStatus(res) == PGRES_COPY_BOTH) {
			c->busy = false;
			c->copy = true;
			ev_timer_stop(c->loop, &c->timer);
		}
		c->cb(c->arg, PG_CONN_EVENT_RESULT, res, NULL);
		PQclear(res);
	}
	if (c->gen == gen && c->copy && !c->paused)
		c->cb(c->arg, PG_CONN_EVENT_COPY, NULL, NULL);
	while (c->gen == gen && c->conn != NULL &&
	    (n = PQnotifies(c->conn)) != NULL) {
		c->cb(c->arg, PG_CONN_EVENT_NOTIFY, NULL, n);
		PQfreemem(n);
	}
}

static void
pg_conn_poll(struct pg_conn *c)
{
	switch (PQconnectPoll(c->conn)) {
	case PGRES_POLLING_READING:
		pg_conn_watch(c, EV_READ);
		break;
	case PGRES_POLLING_WRITING:
		pg_conn_watch(c, EV_WRITE);
		break;
	case PGRES_POLLING_OK:
		ev_timer_stop(c->loop, &c->timer);
		if (PQsetnonblocking(c->conn, 1) != 0) {
			pg_conn_fail(c, "cannot set non-blocking mode");
			return;
		}
		c->state = PG_CONN_READY;
		c->up_at = ev_now(c->loop);
		pg_conn_watch(c, EV_READ);
		c->cb(c->arg, PG_CONN_EVENT_UP, NULL, NULL);
		break;
	default:
		pg_conn_fail(c, "cannot connect");
		break;
	}
}

static void
pg_conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct pg_conn *c = w->data;

	if (c->state == PG_CONN_CONNECTING) {
		pg_conn_poll(c);
		return;
	}
	if (c->state != PG_CONN_READY) {
		ev_io_stop(loop, w);
		return;
	}
	if (revents & EV_WRITE) {
		int r = PQflush(c->conn);

		if (r == -1) {
			pg_conn_fail(c, "write failed");
			return;
		}
		if (r == 0) {
			c->writing = false;
			pg_conn_watch(c, EV_READ);
		}
	}
	if ((revents & EV_READ) && !c->paused) {
		if (!PQconsumeInput(c->conn)) {
			pg_conn_fail(c, "connection lost");
			return;
		}
		pg_conn_deliver(c);
	}
}

/* libpq ignores connect_timeout in non-blocking mode: the timer ends the
 * attempt, and the next one starts at the next host (pg_conn_rotated). */
static void
pg_conn_timed_out(struct pg_conn *c)
{
	const char *host = PQhost(c->conn), *port = PQport(c->conn);
	char why[300];

	snprintf(why, sizeof(why), "timed out connecting to %s:%s",
	    host != NULL ? host : "?", port != NULL ? port : "?");
	c->first_host++;
	pg_conn_fail(c, why);
}

static void
pg_conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct pg_conn *c = w->data;

	if (c->state == PG_CONN_BACKOFF)
		pg_conn_connect(c);
	else if (c->state == PG_CONN_CONNECTING)
		pg_conn_timed_out(c);
	else if (c->state == PG_CONN_READY && c->busy)
		/* A half-open connection answers nothing, ever. */
		pg_conn_fail(c, "no reply to a query");
}

/* list, a comma-separated list, with its first k entries moved to its
 * end, into out (empty when the list has a single entry). */
static void
pg_conn_rotate(struct buf *out, const char *list, unsigned k)
{
	size_t n = 1;

	for (const char *p = list; *p != '\0'; p++)
		n += *p == ',';
	if (n < 2)
		return;
	for (size_t i = 0; i < n; i++) {
		const char *s = list, *e;

		for (size_t j = 0; j < (i + k) % n; j++)
			s = strchr(s, ',') + 1;
		e = strchr(s, ',');
		if (i > 0)
			buf_addc(out, ',');
		buf_add(out, s, e != NULL ? (size_t)(e - s) : strlen(s));
	}
}

/*
 * libpq moves on to the next host of a multi-host conninfo when one
 * refuses, but in non-blocking mode nothing times out a host that never
 * answers (a machine that is off): the connect timer ends the whole
 * attempt. So the next attempt starts one host further down the list,
 * and a silent first host cannot keep the daemon from a promoted second
 * one. The host, hostaddr and port lists are passed rotated, after
 * dbname, which they override.
 */
static int
pg_conn_rotated(const struct pg_conn *c, const char **keys,
    const char **vals, int n, struct buf lists[3])
{
	static const char *const names[3] = { "host", "hostaddr", "port" };
	PQconninfoOption *opts;

	if (c->first_host == 0 ||
	    (opts = PQconninfoParse(c->conninfo, NULL)) == NULL)
		return n;
	for (int i = 0; i < 3; i++)
		for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
			if (strcmp(o->keyword, names[i]) == 0 &&
			    o->val != NULL) {
				pg_conn_rotate(&lists[i], o->val,
				    c->first_host);
				if (lists[i].len > 0) {
					keys[n] = names[i];
					vals[n++] = lists[i].data;
				}
			}
	PQconninfoFree(opts);
	return n;
}

static void
pg_conn_connect(struct pg_conn *c)
{
	/* Keywords before dbname are defaults that the conninfo may
	 * override; those after it are required by pginval. Keepalives
	 * and tcp_user_timeout bound how long a dead peer goes unnoticed. */
	const char *keys[] = {
		"fallback_application_name", "keepalives", "keepalives_idle",
		"keepalives_interval", "keepalives_count", "tcp_user_timeout",
		"dbname", "client_encoding", NULL, NULL, NULL, NULL, NULL, NULL,
	};
	const char *vals[] = {
		"pginval", "1", c->tcp[0], c->tcp[1], c->tcp[2], c->tcp[3],
		c->conninfo, "UTF8", NULL, NULL, NULL, NULL, NULL, NULL,
	};
	struct buf lists[3] = { { 0 }, { 0 }, { 0 } };
	int n = pg_conn_rotated(c, keys, vals, 8, lists);

	if (c->replication) {
		keys[n] = "replication";
		vals[n++] = "database";
	}
	if (c->password != NULL) {
		keys[n] = "password";
		vals[n++] = c->password;
	}

	c->state = PG_CONN_CONNECTING;
	c->conn = PQconnectStartParams(keys, vals, 1);
	for (int i = 0; i < 3; i++)
		buf_free(&lists[i]);
	if (c->conn == NULL || PQstatus(c->conn) == CONNECTION_BAD) {
		pg_conn_fail(c, "cannot connect");
		return;
	}
	PQsetNoticeProcessor(c->conn, pg_conn_notice, c);
	ev_timer_set(&c->timer, c->connect_timeout, 0);
	ev_timer_start(c->loop, &c->timer);
	pg_conn_watch(c, EV_WRITE);
}

int
pg_conn_query(struct pg_conn *c, const char *sql, int nparams,
    const char *const *params)
{
	if (!pg_conn_ready(c))
		return -1;
	/* Without parameters, the simple protocol: it allows several
	 * statements in one round trip. */
	if (!(params == NULL ? PQsendQuery(c->conn, sql) :
	    PQsendQueryParams(c->conn, sql, nparams, NULL, params, NULL, NULL,
	    0))) {
		pg_conn_fail(c, "cannot send a query");
		return -1;
	}
	c->busy = true;
	if (c->query_timeout > 0) {
		ev_timer_set(&c->timer, c->query_timeout, 0);
		ev_timer_start(c->loop, &c->timer);
	}
	return pg_conn_flush(c);
}

int
pg_conn_flush(struct pg_conn *c)
{
	int r = PQflush(c->conn);

	if (r == -1) {
		pg_conn_fail(c, "write failed");
		return -1;
	}
	if (r == 1 && !c->writing) {
		c->writing = true;
		pg_conn_watch(c, EV_READ | EV_WRITE);
	}
	return 0;
}

void
pg_conn_set_query_timeout(struct pg_conn *c, double secs)
{
	c->query_timeout = secs;
}

static void
pg_conn_resume_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct pg_conn *c = w->data;

	(void)loop;
	(void)revents;
	if (c->state == PG_CONN_READY && c->copy && !c->paused)
		c->cb(c->arg, PG_CONN_EVENT_COPY, NULL, NULL);
}

void
pg_conn_pause(struct pg_conn *c, bool paused)
{
	if (c->state != PG_CONN_READY || !c->copy || c->paused == paused)
		return;
	c->paused = paused;
	pg_conn_watch(c, EV_READ);
	/* libpq may hold whole messages already: the socket would not say. */
	if (!paused) {
		ev_timer_set(&c->resume, 0, 0);
		ev_timer_start(c->loop, &c->resume);
	}
}

struct pg_conn *
pg_conn_new(struct ev_loop *loop, const struct pg_conn_opts *opts,
    pg_conn_cb *cb, void *arg)
{
	struct pg_conn *c = xcalloc(1, sizeof(*c));

	c->loop = loop;
	c->cb = cb;
	c->arg = arg;
	c->name = xstrdup(opts->name);
	c->conninfo = xstrdup(opts->conninfo);
	c->password = opts->password ? xstrdup(opts->password) : NULL;
	c->replication = opts->replication;
	snprintf(c->tcp[0], sizeof(c->tcp[0]), "%d", opts->keepalives_idle > 0 ?
	    opts->keepalives_idle : 30);
	snprintf(c->tcp[1], sizeof(c->tcp[1]), "%d",
	    opts->keepalives_interval > 0 ? opts->keepalives_interval : 10);
	snprintf(c->tcp[2], sizeof(c->tcp[2]), "%d",
	    opts->keepalives_count > 0 ? opts->keepalives_count : 3);
	snprintf(c->tcp[3], sizeof(c->tcp[3]), "%d", opts->user_timeout_ms > 0 ?
	    opts->user_timeout_ms : 60000);
	c->connect_timeout = opts->connect_timeout;
	c->query_timeout = opts->query_timeout;
	c->backoff.min = opts->reconnect_min;
	c->backoff.max = opts->reconnect_max;
	ev_io_init(&c->io, pg_conn_io_cb, -1, EV_READ);
	c->io.data = c;
	ev_timer_init(&c->timer, pg_conn_timer_cb, 0, 0);
	c->timer.data = c;
	ev_timer_init(&c->resume, pg_conn_resume_cb, 0, 0);
	c->resume.data = c;
	return c;
}

void
pg_conn_start(struct pg_conn *c)
{
	if (c->state == PG_CONN_STOPPED)
		pg_conn_connect(c);
}

void
pg_conn_stop(struct pg_conn *c)
{
	pg_conn_close(c);
	c->state = PG_CONN_STOPPED;
}

void
pg_conn_free(struct pg_conn *c)
{
	if (c == NULL)
		return;
	pg_conn_close(c);
	free(c->name);
	free(c->conninfo);
	free(c->password);
	free(c);
}

bool
pg_conn_ready(const struct pg_conn *c)
{
	return c->state == PG_CONN_READY && !c->busy;
}

bool
pg_conn_up(const struct pg_conn *c)
{
	return c->state == PG_CONN_READY;
}

bool
pg_conn_connecting(const struct pg_conn *c)
{
	return c->state == PG_CONN_CONNECTING;
}

PGconn *
pg_conn_pq(struct pg_conn *c)
{
	return c->conn;
}
