/*
 * One target Redis of pginval apply: a hiredis async connection that
 * carries invalidations (the pginval_invalidate script: UNLINK plus a
 * marker), refreshed values (SET PX), reset sweeps (SCAN + UNLINK) and
 * flushes, in the order they were asked for. Commands stay owned by the
 * target until Redis answers them; when the link drops first they are
 * sent again after the reconnect, which is harmless because every one of
 * them is idempotent. The queue is bounded: when it overflows it is
 * dropped and the owner is told to reset that target instead.
 */
#ifndef PGINVAL_APPLY_TARGET_H
#define PGINVAL_APPLY_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "apply/apply_stats.h"
#include "lib/redis_conn.h"

struct ev_loop;
struct apply_target;

enum apply_target_event {
	TARGET_EVENT_READY,	/* connected and ready for commands */
	TARGET_EVENT_LOST,	/* connection lost; commands kept for later */
	TARGET_EVENT_OVERFLOW,	/* the queue was dropped: reset this target */
	/* The Redis may have forgotten invalidations it acknowledged (a
	 * restart from an older snapshot, a promoted replica that was
	 * behind): apply_target_forgot_mark() says from where they must be
	 * made again, else reset this target. Logged and counted already. */
	TARGET_EVENT_FORGOT,
};

/* The callback may queue commands on t, never free it. */
typedef void apply_target_cb(void *arg, struct apply_target *t,
    enum apply_target_event ev);

struct apply_target_opts {
	const char *name;	/* [target NAME], or "default" */
	/* The server and its timeouts; the log name and the backlog are set
	 * by the target. */
	struct redis_conn_opts conn;
	int max_inflight;
	int max_queue;
	double marker_ttl;	/* seconds */
	double marker_margin;	/* seconds added to marker versions */
	bool markers;		/* off: invalidations are plain UNLINKs */
	struct apply_stats *stats;	/* borrowed; must outlive the target */
};

struct apply_target *apply_target_new(struct ev_loop *loop,
    const struct apply_target_opts *opts, apply_target_cb *cb, void *arg);
void apply_target_start(struct apply_target *t);
void apply_target_free(struct apply_target *t);
/* Applies the settings a reload may change (limits, timeouts, markers);
 * the server and credentials stay as they were. */
void apply_target_tune(struct apply_target *t,
    const struct apply_target_opts *opts);

/* Invalidates key (binary-safe): UNLINK it and mark it with a version at
 * least ts (the change time, microseconds) so that older reads cannot
 * fill it again. */
void apply_target_invalidate(struct apply_target *t, const char *key,
    size_t len, int64_t ts);
/* SET key value PX ttl_ms: a refreshed value. */
void apply_target_set(struct apply_target *t, const char *key, size_t klen,
    const char *value, size_t vlen, long ttl_ms, int64_t ts);
/* Removes every key matching the glob, with SCAN + UNLINK in batches. A
 * sweep of a pattern already being swept starts it again when it ends. */
void apply_target_sweep(struct apply_target *t, const char *pattern);
/* FLUSHDB ASYNC. */
void apply_target_flush(struct apply_target *t);

/* Commands queued or in flight, and sweeps not finished. */
bool apply_target_busy(const struct apply_target *t);
size_t apply_target_queued(const struct apply_target *t);
size_t apply_target_inflight(const struct apply_target *t);
/* The connection's state; redis_state_name() names it. */
enum redis_state apply_target_state(const struct apply_target *t);
const char *apply_target_name(const struct apply_target *t);
/* Times the target's Redis may have forgotten acknowledged writes. */
unsigned long apply_target_history_breaks(const struct apply_target *t);
/*
 * Marks: the owner numbers what it asks for with marks that only grow
 * (0 is none), calling apply_target_mark() before the commands of each
 * one. The target knows the newest mark whose commands, and everything
 * asked before them, were all answered and no reset came since, and its
 * links keep that as checkpoints of each server's history, so that a
 * server that forgets can say from where its writes were lost.
 */
void apply_target_mark(struct apply_target *t, uint64_t mark);
/* During TARGET_EVENT_FORGOT: every command up to this mark is still
 * held by the server; 0: nothing is known to be, reset the target. */
uint64_t apply_target_forgot_mark(const struct apply_target *t);
/* While marks from before are being asked for again (on: from is the
 * newest the server holds), the answered mark stays at from; after, it
 * moves again once every command is answered. */
void apply_target_repairing(struct apply_target *t, bool on, uint64_t from);
/* The SHA1 of the fill script, once a connection has loaded it; "" before. */
const char *apply_target_fill_sha(const struct apply_target *t);

#endif
