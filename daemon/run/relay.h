/*
 * The relay wires the pipeline together: notifications from pg_source are
 * decoded, turned into keys by the table rules, encoded and queued on the
 * redis_sink. It owns the policy for what may have been lost: a reset
 * whenever LISTEN (re)starts, a table-wide reset for a change it cannot
 * turn into keys, and a reset in place of a queue that overflowed.
 */
#ifndef PGINVAL_RELAY_H
#define PGINVAL_RELAY_H

#include <stdbool.h>

#include "lib/buf.h"
#include "core/config.h"
#include "run/stats.h"

struct ev_loop;
struct relay;

enum relay_event {
	RELAY_EVENT_READY,	/* LISTEN active and Redis ready */
	RELAY_EVENT_DEGRADED,	/* one side was lost; it is reconnecting */
};

typedef void relay_cb(void *arg, enum relay_event ev);

/* Takes ownership of cfg. cb (may be NULL) hears of readiness changes. */
struct relay *relay_new(struct ev_loop *loop, struct config *cfg,
    relay_cb *cb, void *arg);
void relay_start(struct relay *r);
/* Takes ownership of cfg; keeps both connections when their settings are
 * unchanged. The log level is the caller's to set. */
void relay_reload(struct relay *r, struct config *cfg);
/* A shutdown: stops reading PostgreSQL and taking outbox batches; what is
 * queued is still sent. The caller waits while relay_busy(), for up to
 * shutdown_timeout. */
void relay_stop(struct relay *r);
/* Messages not yet acknowledged by Redis, or outbox rows not yet deleted. */
bool relay_busy(const struct relay *r);
void relay_free(struct relay *r);
/* What a relay leaves to the next one of this process (run/ha.c, after
 * a fence): whether it (or one before it) streamed from the wal slot, so
 * that a missing slot means a failover; and its outbox session, which
 * may live on at the server holding a batch's row locks. */
struct relay_past {
	bool wal_streamed;
	int outbox_backend;	/* 0: none */
};

void relay_leaves(const struct relay *r, struct relay_past *out);
/* r takes over from the relay that left p; before relay_start(). */
void relay_follows(struct relay *r, const struct relay_past *p);

/* Appends the Prometheus exposition of the counters and gauges. */
void relay_metrics(struct relay *r, struct buf *out);
/* True when both sides are up; why says each side's state either way. */
bool relay_health(struct relay *r, struct buf *why);
/* One line for humans (systemd STATUS=): states, rates since the previous
 * call, and counts. */
void relay_status(struct relay *r, struct buf *out);
const struct stats *relay_stats(const struct relay *r);

#endif
