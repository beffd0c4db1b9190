/*
 * The Redis sink's state, shared by redis_sink.c (the queue, the channel
 * and the stream), sink_link.c (the router's events, redirects) and
 * sink_delete.c (action = delete: UNLINKs and sweeps). Not for other
 * modules: they see only redis_sink.h.
 */
#ifndef PGINVAL_SINK_INT_H
#define PGINVAL_SINK_INT_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/fifo.h"
#include "lib/log.h"
#include "lib/redis_router.h"
#include "lib/redis_sweep.h"
#include "run/redis_sink.h"

struct redisReply;

struct redis_sink {
	struct ev_loop *loop;
	redis_sink_cb *cb;
	void *arg;
	struct redis_sink_opts o;	/* numbers; strings are below */
	char *epoch, *channel;
	char *stream;			/* NULL: none */
	char maxlen[24];		/* its MAXLEN, in decimal */
	double stream_complained;	/* ev_now() of the last complaint */
	char refusal[160];		/* the last refusal of a message */
	struct log_limit refusal_lines;
	/* The server, or a cluster's masters. Messages go to the master
	 * of the channel's slot, on its link, in the sink's own order. */
	struct redis_router *router;
	int slot;			/* the channel's */
	const char *publish;		/* PUBLISH or SPUBLISH */
	struct redis_router_node *sent_on;	/* what is in flight went here */
	struct redis_router_node *ready_on;	/* READY was told for it */
	/* Messages in flight that a redirect sent back: never published,
	 * so their seqs are used again, unless something else came back
	 * among them (mixed). */
	unsigned redirected;
	bool redirect_mixed;
	struct redis_sweep *sweep;	/* action = delete: patterns */

	struct fifo queue;		/* waiting to be sent */
	struct fifo inflight;	/* sent, awaiting a reply */
	struct fifo requeue;	/* collected while the link drops */
	uint64_t seq;
	struct buf frame;
	ev_prepare kick;		/* sends at the end of a loop iteration */
	bool held;			/* redis_sink_hold() */
	ev_timer hold;			/* end of a coalescing window */
	size_t bytes;			/* memory held by messages */
	struct stats *stats;
};

/* redis_sink.c */
void redis_sink_kick(struct redis_sink *s);
bool redis_sink_unreadable(const struct redisReply *reply);
void redis_sink_refused(struct redis_sink *s, const char *what,
    const char *err);

/* sink_link.c: the router's events; whether an error reply only sends
 * the message elsewhere (a cluster's MOVED...), after which it is sent
 * again. */
void sink_node_cb(void *arg, enum redis_router_event ev,
    struct redis_router_node *n);
bool sink_redirected(struct redis_sink *s, struct redis_router_node *n,
    const struct redisReply *reply);

/*
 * sink_delete.c. Removes m's keys and sweeps its patterns before m is
 * announced: 0 when m may go out, 1 while the UNLINKs of a cluster's
 * nodes are awaited (m stays first in the queue and the sink is kicked
 * when they are in), -1 when the link is closing.
 */
int sink_delete(struct redis_sink *s, struct sink_msg *m,
    struct redis_conn *conn);
void sink_delete_sweep_cb(void *arg, enum redis_sweep_event ev,
    const char *pattern, const char *err, unsigned long n);

#endif
