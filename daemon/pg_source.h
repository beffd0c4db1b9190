/*
 * The PostgreSQL side: one libpq connection that LISTENs on the channel
 * the triggers NOTIFY, without ever blocking the loop. A lost connection is
 * a state with a backoff timer, never an error the caller must handle.
 */
#ifndef PGINVAL_PG_SOURCE_H
#define PGINVAL_PG_SOURCE_H

#include <stddef.h>

struct ev_loop;

enum pg_state {
	PG_STATE_STOPPED,
	PG_STATE_CONNECTING,	/* PQconnectPoll in progress */
	PG_STATE_SUBSCRIBING,	/* LISTEN sent, no reply yet */
	PG_STATE_LISTENING,
	PG_STATE_BACKOFF,	/* waiting to reconnect */
};

enum pg_event {
	/* LISTEN is active. Notifications sent before this moment, while no
	 * connection was listening, are lost: the receiver must say so. */
	PG_EVENT_LISTENING,
	/* One notification; payload is borrowed for the callback only. */
	PG_EVENT_NOTIFY,
	/* The connection was lost; a reconnect is scheduled. */
	PG_EVENT_LOST,
};

typedef void pg_source_cb(void *arg, enum pg_event ev, const char *payload,
    size_t len);

struct pg_source_opts {
	const char *conninfo;	/* copied */
	const char *channel;	/* copied */
	double connect_timeout;
	double reconnect_min, reconnect_max;
};

/* The callback may call pg_source_stop(), never pg_source_free(). */
struct pg_source *pg_source_new(struct ev_loop *loop,
    const struct pg_source_opts *opts, pg_source_cb *cb, void *arg);
void pg_source_start(struct pg_source *src);
/* Closes the connection; no callback follows. */
void pg_source_stop(struct pg_source *src);
void pg_source_free(struct pg_source *src);
enum pg_state pg_source_state(const struct pg_source *src);
const char *pg_state_name(enum pg_state st);

#endif
