/*
 * A message of the Redis sink (redis_sink.h), and the pure operations on
 * it: its size for the queue's byte bound, and merging row messages.
 */
#ifndef PGINVAL_SINK_MSG_H
#define PGINVAL_SINK_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/fifo.h"
#include "lib/keys.h"

/*
 * One message. The sink takes ownership in redis_sink_push(). Either body
 * holds the encoded body (resets, truncates), or op is set and the message
 * is about row changes: its body is encoded when it is sent, and while it
 * waits in the queue, later changes of the same table and op merge into it
 * (their keys without duplicates, their rows in order).
 */
struct sink_msg {
	struct fifo_node node;	/* first: the sink's lists link through it */
	struct buf body;
	const char *op;		/* static; NULL unless about row changes */
	char *table;		/* with op, or the table a body is about */
	bool reset;		/* the body is a reset (of table, or of all) */
	struct keys keys;	/* with op: the message's keys */
	struct buf rows;	/* with op: message_rows() objects, comma-separated */
	size_t nrows;		/* 0: no row images ([redis] rows = off) */
	/* With action = delete: glob patterns whose matching keys are
	 * removed with SCAN + UNLINK (a row message UNLINKs its keys). */
	struct keys patterns;
	int64_t ts;		/* the (earliest) change time */
	double queued_at;	/* ev_now() when queued */
	/* Called nacks times when Redis answers the PUBLISH (durable
	 * delivery). Such a message is never dropped to make room. */
	void (*on_ack)(void *arg);
	void *ack_arg;
	unsigned nacks;
	/* A message Redis refuses (an error reply to its PUBLISH, or to any
	 * of its commands one that Redis cannot even read, such as an
	 * argument over proto-max-bulk-len: the link is then closed) is
	 * sent again, REDIS_SINK_REFUSALS (redis_sink.h) times at most. */
	unsigned refusals;
	bool refused;		/* in the current attempt */
	/* action = delete in a cluster: UNLINKs awaited, and done. */
	unsigned unlinking;
	bool unlinked;
};

struct sink_msg *sink_msg_new(void);
void sink_msg_free(struct sink_msg *m);
/* Roughly the memory a message holds, for the queue's byte bound. */
size_t sink_msg_size(const struct sink_msg *m);
/* Whether b can merge into a: row changes of the same table and op, for
 * the same acknowledgement, both with row images or both without, within
 * max_keys keys. */
bool sink_msg_mergeable(const struct sink_msg *a, const struct sink_msg *b,
    size_t max_keys);
/* Merges b into a. A key made stale twice goes out once. */
void sink_msg_merge(struct sink_msg *a, const struct sink_msg *b);

#endif
