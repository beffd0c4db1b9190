/*
 * The replay of pginval apply. The daemon appends every message it
 * publishes to a capped stream ([redis] stream), before it publishes it.
 * When apply missed messages (a gap, or its own resubscription), it reads
 * them back from there, on a connection of its own to the channel's
 * Redis, instead of resetting.
 *
 * Messages carry no stream IDs, so a replay first walks the stream back
 * from its end to the entry of the last message apply handled (its epoch
 * and seq), then hands over every entry after that one, in order, a page
 * at a time. It fails, and the owner resets instead, when that entry is
 * not in the stream any more (trimmed, or Redis lost it), when the
 * connection is not ready in time or drops, or when Redis refuses a read.
 *
 * While a replay runs, the owner holds the messages that arrive live
 * (apply_replay_hold()) and takes them back when it is over: every one of
 * them was in the stream before it was published, so most were replayed
 * already and are skipped as repeats.
 */
#ifndef PGINVAL_APPLY_REPLAY_H
#define PGINVAL_APPLY_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REPLAY_MAX_HELD 100000
#define REPLAY_MAX_HELD_BYTES (64u << 20)

struct ev_loop;
struct apply_replay;
struct redis_conn_opts;

enum apply_replay_event {
	REPLAY_EVENT_ENTRY,	/* a replayed message: payload, len */
	REPLAY_EVENT_DONE,	/* the end was reached; len: entries replayed */
	REPLAY_EVENT_FAILED,	/* payload: why, NUL-terminated */
};

/*
 * payload is borrowed for the length of the call. For ENTRY, returning
 * false ends the replay as FAILED (the entry did not follow the one
 * before). The callback may start a new replay from DONE and FAILED.
 */
typedef bool apply_replay_cb(void *arg, enum apply_replay_event ev,
    const char *payload, size_t len);
/* True while the owner's targets have too much queued for another page. */
typedef bool apply_replay_busy_fn(void *arg);

/* conn: the channel's Redis (its name is set here); busy paces reading. */
struct apply_replay *apply_replay_new(struct ev_loop *loop,
    const struct redis_conn_opts *conn, const char *stream,
    apply_replay_busy_fn *busy, apply_replay_cb *cb, void *arg);
void apply_replay_start(struct apply_replay *r);
/* Closes the connection and frees held messages; no callback follows. */
void apply_replay_free(struct apply_replay *r);

/*
 * Replays the entries after the one of (epoch, seq). While one runs, a
 * call only makes sure that it reads to the stream's end as it is now
 * (after a resubscription, messages missed meanwhile are there).
 */
void apply_replay_from(struct apply_replay *r, const char *epoch,
    uint64_t seq);
bool apply_replay_running(const struct apply_replay *r);
/* Ends a replay, if one runs, without an event; forgets held messages. */
void apply_replay_cancel(struct apply_replay *r);

/* Keeps a copy of a live message; false when the bound on held messages
 * (REPLAY_MAX_HELD of them, REPLAY_MAX_HELD_BYTES in all) is reached. */
bool apply_replay_hold(struct apply_replay *r, const char *payload,
    size_t len);
/* The oldest held message, or NULL; borrowed until apply_replay_pop(). */
const char *apply_replay_held(const struct apply_replay *r, size_t *len);
void apply_replay_pop(struct apply_replay *r);
/* Forgets every held message. */
void apply_replay_drop_held(struct apply_replay *r);

#endif
