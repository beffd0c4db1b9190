/*
 * Sweeps over one redis_conn: every key matching a glob pattern is
 * removed with SCAN cursor MATCH pattern COUNT 1000 and an UNLINK of each
 * batch found. The Redis sink needs them for action = delete, the targets
 * of pginval apply for resets. A sweep whose link drops starts again from
 * the beginning after the reconnect: the server may be a new one.
 */
#ifndef PGINVAL_REDIS_SWEEP_H
#define PGINVAL_REDIS_SWEEP_H

#include <stdbool.h>
#include <stddef.h>

struct redis_conn;
struct redis_sweep;

enum redis_sweep_event {
	REDIS_SWEEP_EVENT_UNLINKED,	/* an UNLINK removed n keys */
	REDIS_SWEEP_EVENT_UNLINK_FAILED,	/* an UNLINK failed: err */
	REDIS_SWEEP_EVENT_DONE,		/* every key matching pattern is gone */
	REDIS_SWEEP_EVENT_FAILED,	/* SCAN failed (err): keys matching
					 * pattern may remain; sweep dropped */
};

/* pattern (NULL for the UNLINK events) and err are borrowed for the
 * length of the call. The callback must not free the sweeps. */
typedef void redis_sweep_cb(void *arg, enum redis_sweep_event ev,
    const char *pattern, const char *err, unsigned long n);

/*
 * conn is borrowed. Its owner frees conn before the sweeps, and passes on
 * two of its events: READY to redis_sweep_resume(), CLOSED to
 * redis_sweep_reset(). With merge, a pattern already being swept is not
 * added twice: that sweep goes round once more when it ends instead.
 */
struct redis_sweep *redis_sweep_new(struct redis_conn *conn, bool merge,
    redis_sweep_cb *cb, void *arg);
void redis_sweep_free(struct redis_sweep *sw);
/* Starts a sweep of the pattern (binary-safe), now if the link is ready. */
void redis_sweep_add(struct redis_sweep *sw, const char *pattern,
    size_t len);
void redis_sweep_resume(struct redis_sweep *sw);
void redis_sweep_reset(struct redis_sweep *sw);
/* Sweeps not finished. */
bool redis_sweep_busy(const struct redis_sweep *sw);

#endif
