/*
 * The relay's counters and lag histogram, shared by the modules of
 * pginval run and rendered in the Prometheus text format for /metrics.
 * Rendering is pure, so it is unit-tested; the modules only increment
 * fields.
 */
#ifndef PGINVAL_STATS_H
#define PGINVAL_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/hist.h"

#define STATS_MAX_TABLES 256	/* more distinct tables count as "(other)" */

struct stats_table {
	char *name;
	unsigned long events;
};

struct stats {
	unsigned long notifications;	/* every NOTIFY received */
	unsigned long outbox_rows;	/* rows taken from the outbox */
	unsigned long outbox_oversized;	/* of those, over max_payload */
	unsigned long forged_notify;	/* without a valid authenticator: */
	unsigned long forged_outbox;	/*   dropped */
	unsigned long forged_wal;	/* (messages in the WAL) */
	unsigned long foreign;		/* signed, yet not pginval payloads */
	unsigned long invalid;		/* pginval payloads that were unusable */
	unsigned long table_resets;	/* changes that became a table reset */
	unsigned long resets;		/* global resets queued */
	unsigned long dropped;		/* messages dropped by a full queue */
	unsigned long published;	/* PUBLISHes acknowledged */
	unsigned long keys_published;	/* keys in acknowledged PUBLISHes */
	unsigned long refused;		/* PUBLISHes answered with an error */
	unsigned long stream_refused;	/* XADDs answered with an error */
	unsigned long replaced;		/* refused too often: now a reset */
	unsigned long requeued;		/* resent after a lost connection */
	unsigned long unlinked;		/* keys removed (action = delete) */
	unsigned long pg_reconnects, redis_reconnects;
	unsigned long history_breaks;	/* Redis forgot acknowledged writes */

	struct hist lag;	/* row change to Redis acknowledgement */

	struct stats_table *tables;	/* open addressing, 2x capacity */
	size_t ntables;
	unsigned long other_events;
};

/* Gauges that the owner reads from the modules at render time. */
struct stats_gauges {
	int pg_up, redis_up;
	const char *pg_state, *redis_state;
	size_t queued, inflight;
	long outbox_backlog;		/* -1: not in durable mode */
	double notify_queue_usage;	/* 0 to 1; below 0: not known */
	/* The wal mode's stream, when wal is set. */
	bool wal;
	int wal_up;
	double wal_retained, wal_unconfirmed;	/* bytes; below 0: not known */
	double wal_lag;			/* seconds */
	unsigned long wal_transactions, wal_changes, wal_slots_created;
	const char *version, *epoch;
};

void stats_count_event(struct stats *s, const char *table);
/* Appends the Prometheus text exposition (version 0.0.4). */
void stats_render(const struct stats *s, const struct stats_gauges *g,
    struct buf *out);
void stats_free(struct stats *s);

#endif
