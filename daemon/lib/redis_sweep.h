/*
 * Sweeps over a redis_router's nodes (one server, or every master of a
 * cluster): every key matching a glob pattern is removed with SCAN
 * cursor MATCH pattern COUNT 1000 on each node and an UNLINK of each
 * batch found (one per slot in a cluster). The Redis sink needs them for
 * action = delete, the targets of pginval apply for resets. A node whose
 * link drops is scanned again from the beginning after the reconnect:
 * the server may be a new one.
 *
 * A sweep asked for while one of the same pattern is under way, or
 * resting after one, merges with it: one more pass follows, which starts
 * after the request (keys cached meanwhile are removed too), never
 * sooner than REDIS_SWEEP_REST after the previous pass started, nor
 * sooner after it ended than it took. However many truncates of a table
 * arrive, its patterns are swept at most that often, and every one of
 * them is followed by a pass that starts after it.
 */
#ifndef PGINVAL_REDIS_SWEEP_H
#define PGINVAL_REDIS_SWEEP_H

#include <stdbool.h>
#include <stddef.h>

#define REDIS_SWEEP_REST 0.1	/* seconds between the starts of passes */

struct ev_loop;
struct redis_conn;
struct redis_router;
struct redis_sweep;

enum redis_sweep_event {
	REDIS_SWEEP_EVENT_UNLINKED,	/* an UNLINK removed n keys */
	REDIS_SWEEP_EVENT_UNLINK_FAILED,	/* an UNLINK failed: err */
	REDIS_SWEEP_EVENT_STARTED,	/* a pass over pattern starts */
	REDIS_SWEEP_EVENT_MERGED,	/* a request joined a pass to come */
	REDIS_SWEEP_EVENT_DONE,		/* a pass ended: every key matching
					 * pattern when it started is gone */
	REDIS_SWEEP_EVENT_FAILED,	/* SCAN failed (err): keys matching
					 * pattern may remain; sweep dropped */
};

/* pattern (NULL for the UNLINK events) and err are borrowed for the
 * length of the call. The callback must not free the sweeps. */
typedef void redis_sweep_cb(void *arg, enum redis_sweep_event ev,
    const char *pattern, const char *err, unsigned long n);

/*
 * router is borrowed. Its owner frees the router before the sweeps, and
 * passes on its node events: READY to redis_sweep_resume(), CLOSED to
 * redis_sweep_reset() with that node's link, NEW and GONE to
 * redis_sweep_nodes_changed().
 */
struct redis_sweep *redis_sweep_new(struct ev_loop *loop,
    struct redis_router *router, redis_sweep_cb *cb, void *arg);
void redis_sweep_free(struct redis_sweep *sw);
/* Sweeps the pattern (binary-safe): a pass starts now if the link is
 * ready, or one is added to a sweep of the same pattern (see above). */
void redis_sweep_add(struct redis_sweep *sw, const char *pattern,
    size_t len);
void redis_sweep_resume(struct redis_sweep *sw);
void redis_sweep_reset(struct redis_sweep *sw, const struct redis_conn *conn);
void redis_sweep_nodes_changed(struct redis_sweep *sw);
/* Passes under way or to come. */
bool redis_sweep_busy(const struct redis_sweep *sw);

#endif
