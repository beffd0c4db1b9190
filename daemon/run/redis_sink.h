/*
 * The Redis side: a queue of messages and one hiredis async connection that
 * PUBLISHes them in order, with a bounded number in flight. A message stays
 * owned by the sink until Redis acknowledges it; if the connection drops
 * first, it goes back to the front of the queue and is sent again after
 * the reconnect (with a new seq), so a lost link costs a duplicate, never
 * a lost invalidation.
 *
 * With a stream, each message is first appended to it (XADD MAXLEN ~),
 * in the same pipeline, so that a subscriber that missed messages can
 * read them back: whatever arrives on the channel is already in the
 * stream.
 *
 * A message that Redis refuses is not sent forever: after a few refusals
 * it is handed back to the owner, which replaces it with a reset.
 */
#ifndef PGINVAL_REDIS_SINK_H
#define PGINVAL_REDIS_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/redis_conn.h"
#include "run/sink_msg.h"
#include "run/stats.h"

struct ev_loop;

/* How many times a message may be refused before it is given up. */
#define REDIS_SINK_REFUSALS 3

enum redis_event {
	REDIS_EVENT_READY,	/* connected and ready for commands */
	REDIS_EVENT_LOST,	/* connection lost; unacknowledged messages requeued */
	/* Redis refused the message m REDIS_SINK_REFUSALS times (why says
	 * how, the last time): the sink drops it, unacknowledged, after the
	 * callback, which queues what replaces it (a reset). */
	REDIS_EVENT_REFUSED,
	REDIS_EVENT_IDLE,	/* nothing queued and nothing in flight */
	/* Right after READY: Redis may have forgotten writes it had
	 * acknowledged (why says how; logged and counted already). */
	REDIS_EVENT_FORGOT,
};

/* m is NULL except for REDIS_EVENT_REFUSED, why except for it and
 * REDIS_EVENT_FORGOT; both borrowed. */
typedef void redis_sink_cb(void *arg, enum redis_event ev,
    const struct sink_msg *m, const char *why);


struct redis_sink_opts {
	const struct redis_addr *addr;	/* borrowed; the link copies it */
	const char *channel;
	const char *stream;	/* NULL: none; else each message is XADDed too */
	int stream_maxlen;	/* MAXLEN ~ of the stream */
	const char *epoch;
	bool delete_keys;
	int max_inflight;
	double connect_timeout, command_timeout;
	double health_interval;	/* PING when idle this long; 0: never */
	int max_keys;		/* merge row messages up to this many keys */
	double coalesce;	/* hold a row message this long for merging */
	double reconnect_min, reconnect_max;
	struct stats *stats;	/* borrowed; must outlive the sink */
};

struct redis_sink *redis_sink_new(struct ev_loop *loop,
    const struct redis_sink_opts *opts, redis_sink_cb *cb, void *arg);
void redis_sink_start(struct redis_sink *s);
void redis_sink_free(struct redis_sink *s);


/* Queues m (taking ownership) and sends what the window allows. */
void redis_sink_push(struct redis_sink *s, struct sink_msg *m);
/*
 * The same for a message about row changes that stays the caller's, to be
 * filled again for the next change: it is merged into the last queued
 * message when it can be (no allocation), else its keys and rows move to
 * a new message (m keeps its table, which is borrowed and copied).
 */
void redis_sink_push_change(struct redis_sink *s, struct sink_msg *m);
/* While hold is set, the last queued message, if it is about row
 * changes and not full, is not sent, so that the next changes merge into
 * it: a transaction of many rows goes out in messages of max_keys keys,
 * not one per change. Clearing it sends what waits. */
void redis_sink_hold(struct redis_sink *s, bool hold);
/* Frees every queued message not yet sent, except those waiting for an
 * acknowledgement (on_ack); returns how many. Used when a reset makes them
 * redundant. */
size_t redis_sink_drop_queued(struct redis_sink *s);
/* Applies new settings (a reload). When the server, credentials or
 * database changed, the connection is dropped and made again with the new
 * ones; unacknowledged messages are kept and resent. Returns true if it
 * reconnects. */
bool redis_sink_configure(struct redis_sink *s,
    const struct redis_sink_opts *opts);

size_t redis_sink_queued(const struct redis_sink *s);
/* Memory held by messages not yet acknowledged, roughly, in bytes. */
size_t redis_sink_bytes(const struct redis_sink *s);
size_t redis_sink_inflight(const struct redis_sink *s);
/* The connection's state; redis_state_name() (redis_conn.h) names it. */
enum redis_state redis_sink_state(const struct redis_sink *s);
uint64_t redis_sink_seq(const struct redis_sink *s);

#endif
