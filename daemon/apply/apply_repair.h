/*
 * The repair of a target whose Redis forgot invalidations it had
 * acknowledged (redis_history.h: a restart from an older snapshot, a
 * promoted replica that was behind). Instead of a reset of the whole
 * target, the messages it may have lost are read again from the stream
 * and applied to that target alone.
 *
 * It works with marks. Every message apply handles gets one, which only
 * grows: its seq, below the number of its run of the sequence (a run
 * ends at a new epoch or when the sequence starts again). The targets
 * keep, as checkpoints of each server's replication history, the newest
 * mark whose invalidations were all answered; a server that forgot says
 * which of those it still holds. The repair replays the stream's entries
 * after that message, and succeeds only if they follow each other up to
 * the last message apply had handled when the loss was found: a stream
 * that forgot too, or was trimmed past that message, fails it, and the
 * owner resets the target instead.
 *
 * One repair runs at a time, on a connection of its own to the channel's
 * Redis, made at the first one.
 */
#ifndef PGINVAL_APPLY_REPAIR_H
#define PGINVAL_APPLY_REPAIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "apply/apply_replay.h"
#include "core/message.h"

struct ev_loop;
struct apply_repair;
struct apply_target;
struct redis_conn_opts;

enum apply_repair_event {
	REPAIR_ENTRY,	/* m: a message to apply to t */
	REPAIR_DONE,	/* t holds everything again */
	REPAIR_FAILED,	/* why: reset t instead */
};

typedef void apply_repair_cb(void *arg, struct apply_target *t,
    enum apply_repair_event ev, const struct message *m, const char *why);

struct apply_repair *apply_repair_new(struct ev_loop *loop,
    const char *stream, apply_replay_busy_fn *busy, apply_repair_cb *cb,
    void *arg);
void apply_repair_free(struct apply_repair *r);

/* The mark of a message handled now, in order; 0 if it cannot have one. */
uint64_t apply_repair_mark(struct apply_repair *r, const char *epoch,
    uint64_t seq);

/*
 * Starts the repair of t, which holds every message up to mark, the last
 * one handled being last. conn: the channel's Redis. False, with why,
 * when it cannot be (a mark unknown or too old, another repair running):
 * the owner resets t instead.
 */
bool apply_repair_start(struct apply_repair *r, struct apply_target *t,
    uint64_t mark, const struct message_seq *last,
    const struct redis_conn_opts *conn, char *why, size_t whylen);
/* The target being repaired, or NULL. */
struct apply_target *apply_repair_target(const struct apply_repair *r);
/* Ends the repair of t, if one runs, without an event. */
void apply_repair_cancel(struct apply_repair *r, struct apply_target *t);

#endif
