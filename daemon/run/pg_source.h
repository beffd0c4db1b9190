/*
 * The PostgreSQL side: one connection that LISTENs on the channel the
 * triggers NOTIFY and reads notifications as they arrive. A lost
 * connection is a state with a backoff timer, never an error the caller
 * must handle. A periodic self-NOTIFY proves that the link and the
 * notification path still work; a probe that does not come back within
 * health_interval drops the connection.
 */
#ifndef PGINVAL_PG_SOURCE_H
#define PGINVAL_PG_SOURCE_H

#include <stdbool.h>
#include <stddef.h>

struct ev_loop;
struct sign_key;

enum pg_state {
	PG_STATE_STOPPED,
	PG_STATE_CONNECTING,
	PG_STATE_SUBSCRIBING,	/* LISTEN sent, no reply yet */
	PG_STATE_LISTENING,
	PG_STATE_BACKOFF,	/* waiting to reconnect */
};

enum pg_event {
	/* LISTEN is active. Notifications sent before this moment, while no
	 * connection was listening, are lost: pg_source_lossy() says whether
	 * any table could have sent one. */
	PG_EVENT_LISTENING,
	/* One notification; payload is borrowed for the callback only. */
	PG_EVENT_NOTIFY,
	/* A wake-up from a durable table's trigger: the outbox has rows. */
	PG_EVENT_WAKE,
	/* The connection was lost; a reconnect is scheduled. */
	PG_EVENT_LOST,
	/* A health probe read pg_notification_queue_usage() again, and
	 * whether tables are watched in wal mode, and their slot's sizes. */
	PG_EVENT_QUEUE_USAGE,
};

typedef void pg_source_cb(void *arg, enum pg_event ev, const char *payload,
    size_t len);

struct pg_source_opts {
	const char *conninfo;	/* copied */
	const char *password;	/* copied; may be NULL */
	const char *channel;	/* copied */
	const char *slot;	/* copied: the wal mode's slot, for its sizes */
	double connect_timeout;
	double reconnect_min, reconnect_max;
	double health_interval;	/* 0: no probes */
	double query_timeout;
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
/* Whether changes may have been lost before the last PG_EVENT_LISTENING:
 * true unless every table watched on the channel uses an outbox. */
bool pg_source_lossy(const struct pg_source *src);
/* The key of the payloads' authenticator, read after LISTEN at every
 * connect (PG_EVENT_LISTENING comes after it); NULL before the first. */
struct sign_key *pg_source_key(const struct pg_source *src);
/* The share of PostgreSQL's NOTIFY queue in use (0 to 1) at the last
 * health probe, or -1 before the first. A session that LISTENs and stays
 * in a transaction holds the queue back; when it is full, every commit
 * that NOTIFYs fails. */
double pg_source_queue_usage(const struct pg_source *src);

/* Whether a table is watched in wal mode on the channel, as of the last
 * connect or probe. */
bool pg_source_wal_tables(const struct pg_source *src);
/* The WAL the slot keeps (from its restart_lsn) and the WAL not yet
 * confirmed (from its confirmed_flush_lsn), in bytes, at the last probe;
 * -1 when not known (no slot, or no probe yet). */
void pg_source_slot_sizes(const struct pg_source *src, double *retained,
    double *unconfirmed);

#endif
