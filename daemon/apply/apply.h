/*
 * pginval apply: the subscriber daemon in the same binary. It SUBSCRIBEs
 * to the channel and, for every message, invalidates the keys in each
 * target Redis (UNLINK plus an invalidation marker that stale cache fills
 * respect), refreshes them instead where a table has a refresh query, and
 * turns truncates, resets and sequence gaps into sweeps of the tables'
 * key patterns. See README, "Subscribers: pginval apply".
 *
 * This is its policy, on the loop it is given; apply_main.c is the table
 * of operations that the shell (shell.h) drives it with, the way
 * run_main.c is for `pginval run`.
 */
#ifndef PGINVAL_APPLY_H
#define PGINVAL_APPLY_H

#include <stdbool.h>

#include "lib/buf.h"

struct config;
struct ev_loop;
struct apply;

enum apply_event {
	APPLY_EVENT_READY,	/* subscribed, and every target connected */
	APPLY_EVENT_DEGRADED,	/* one of them was lost; it is reconnecting */
};

typedef void apply_cb(void *arg, enum apply_event ev);

/* argv[0] is "apply". Returns the exit status. */
int apply_main(int argc, char **argv);

/* Sets up the targets and the subscription; takes ownership of cfg. cb
 * (may be NULL) hears of readiness changes, from apply_start() on. */
struct apply *apply_new(struct ev_loop *loop, struct config *cfg,
    apply_cb *cb, void *arg);
/* Connects to the targets and subscribes. */
void apply_start(struct apply *a);
/* Closes every connection and logs the totals. */
void apply_free(struct apply *a);
/* A shutdown: stops taking messages; what is queued is still sent. The
 * caller waits while apply_busy(), for up to shutdown_timeout. */
void apply_stop(struct apply *a);
/* Commands, sweeps or refreshes still unacknowledged. */
bool apply_busy(const struct apply *a);
/* A reload: takes ownership of cfg. Tables, refresh queries, limits and
 * timeouts apply at once; what needs a restart is logged. The log level
 * is the caller's to set. */
void apply_reload(struct apply *a, struct config *cfg);

/* Appends the Prometheus exposition of the counters and gauges. */
void apply_metrics(struct apply *a, struct buf *out);
/* True when subscribed with every target connected; why says each one's
 * state either way (/healthz). */
bool apply_health(struct apply *a, struct buf *why);
/* One line for humans (systemd STATUS=): states, rates since the previous
 * call, and counts. */
void apply_status(struct apply *a, struct buf *out);

#endif
