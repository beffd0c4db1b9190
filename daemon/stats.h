/*
 * Counters and the lag histogram, shared by the modules of one daemon and
 * rendered in the Prometheus text format for /metrics. Rendering is pure,
 * so it is unit-tested; the modules only increment fields.
 */
#ifndef PGINVAL_STATS_H
#define PGINVAL_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define STATS_MAX_TABLES 256	/* more distinct tables count as "(other)" */
#define STATS_LAG_BUCKETS 14

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

	/* Row change to Redis acknowledgement, in seconds. */
	unsigned long lag_buckets[STATS_LAG_BUCKETS];	/* not cumulative */
	unsigned long lag_count;
	double lag_sum;

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
	const char *version, *epoch;
};

extern const double stats_lag_bounds[STATS_LAG_BUCKETS];

void stats_count_event(struct stats *s, const char *table);
void stats_observe_lag(struct stats *s, double seconds);
/* Appends the Prometheus text exposition (version 0.0.4). */
void stats_render(const struct stats *s, const struct stats_gauges *g,
    struct buf *out);
void stats_free(struct stats *s);

/*
 * Pieces of that format, for every /metrics of the binary. Names and
 * labels are written as given: labels is the text between the braces,
 * already escaped (NULL or "": none).
 */
/* "# HELP name help" and "# TYPE name type". */
void stats_prom_head(struct buf *out, const char *name, const char *type,
    const char *help);
/* "name{labels} v". */
void stats_prom_sample(struct buf *out, const char *name, const char *labels,
    double v);
/* A label's value: backslash, quote and newline are escaped. */
void stats_prom_label(struct buf *out, const char *v);
/* A counter: its head and its one sample. */
void stats_prom_counter(struct buf *out, const char *name, const char *help,
    unsigned long v);
/* The lag histogram of s: name_bucket{le=...}, name_sum, name_count. */
void stats_prom_lag(struct buf *out, const char *name, const char *help,
    const struct stats *s);

#endif
