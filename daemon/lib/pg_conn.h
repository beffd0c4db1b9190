/*
 * One non-blocking libpq connection on the loop, with its own reconnect
 * policy: the part that the LISTEN connection (pg_source) and the outbox
 * drain (outbox) share. The owner sends one query at a time and hears
 * about everything through a single callback.
 */
#ifndef PGINVAL_PG_CONN_H
#define PGINVAL_PG_CONN_H

#include <libpq-fe.h>
#include <stdbool.h>

struct ev_loop;
struct pg_conn;

enum pg_conn_event {
	PG_CONN_EVENT_UP,	/* connected; queries may be sent */
	PG_CONN_EVENT_RESULT,	/* one result of the current query */
	PG_CONN_EVENT_DONE,	/* the current query has no more results */
	PG_CONN_EVENT_NOTIFY,	/* a notification */
	PG_CONN_EVENT_DOWN,	/* lost after UP; a reconnect is scheduled */
	/* In COPY BOTH mode (a query's result was PGRES_COPY_BOTH, which
	 * came as a RESULT): input arrived, or reading was resumed. Read it
	 * with PQgetCopyData(pg_conn_pq(c), &buf, 1) until it returns 0. */
	PG_CONN_EVENT_COPY,
};

/*
 * res and n are borrowed for the length of the call. The callback may
 * call pg_conn_query(), pg_conn_fail() or pg_conn_stop(), never
 * pg_conn_free().
 */
typedef void pg_conn_cb(void *arg, enum pg_conn_event ev,
    const PGresult *res, const PGnotify *n);

struct pg_conn_opts {
	const char *name;	/* "postgres", "outbox": the log prefix */
	const char *conninfo;	/* copied */
	const char *password;	/* copied; NULL: conninfo, PGPASSWORD, .pgpass */
	double connect_timeout;
	double query_timeout;	/* a query unanswered this long: link dead */
	double reconnect_min, reconnect_max;
	bool replication;	/* a replication=database connection */
	/* TCP keepalives (idle and interval in seconds, count) and
	 * tcp_user_timeout (ms), as defaults that the conninfo may
	 * override; 0: 30, 10, 3 and 60000. */
	int keepalives_idle, keepalives_interval, keepalives_count;
	int user_timeout_ms;
};

struct pg_conn *pg_conn_new(struct ev_loop *loop,
    const struct pg_conn_opts *opts, pg_conn_cb *cb, void *arg);
void pg_conn_start(struct pg_conn *c);
/* Closes the connection; no callback follows. */
void pg_conn_stop(struct pg_conn *c);
void pg_conn_free(struct pg_conn *c);

/* The first statement of every session: names in the daemon's queries
 * resolve in pg_catalog, never in a schema where another role may have
 * planted a function or operator. */
#define PG_CONN_PIN_PATH "SET search_path = pg_catalog, pg_temp; "

/* Sends sql with text parameters; with params NULL, sql may hold several
 * statements. Returns -1 if the connection failed (it is then already
 * being re-established). Only when pg_conn_ready(). */
int pg_conn_query(struct pg_conn *c, const char *sql, int nparams,
    const char *const *params) __attribute__((warn_unused_result));
/* The query timeout of the queries sent from now on (0: none); one that
 * may wait on other sessions, such as creating a replication slot, gets
 * a longer one. */
void pg_conn_set_query_timeout(struct pg_conn *c, double secs);
/* In COPY BOTH mode: stops reading the socket (the owner cannot take more
 * now), or starts again, with a COPY event for what libpq holds already. */
void pg_conn_pause(struct pg_conn *c, bool paused);
/* Sends what libpq has buffered (after PQputCopyData), waiting for the
 * socket if need be. Returns -1 if the connection failed. */
int pg_conn_flush(struct pg_conn *c);
/* Connected and no query in progress. */
bool pg_conn_ready(const struct pg_conn *c);
bool pg_conn_up(const struct pg_conn *c);
bool pg_conn_connecting(const struct pg_conn *c);
/* Drops the connection on the owner's behalf (why is logged) and
 * schedules a reconnect; a DOWN event follows if it was up. */
void pg_conn_fail(struct pg_conn *c, const char *why);
/* The connection, for PQbackendPID, PQhost and the like; NULL if none. */
PGconn *pg_conn_pq(struct pg_conn *c);
/* The server's message for the last error, on one line. */
const char *pg_conn_error(struct pg_conn *c, char *buf, size_t len);

#endif
