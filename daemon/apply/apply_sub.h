/*
 * The subscription of pginval apply: a subscriber link (redis_psub.h) to
 * the channel's Redis, or, in a Redis Cluster, to the node that serves
 * the channel (SSUBSCRIBE with cluster = on, any node with broadcast).
 * It only listens; targets have connections of their own. It reconnects
 * by itself, with backoff and jitter, follows the channel's slot when it
 * moves, and reports each (re)subscription so that the owner can treat
 * it as a gap: pub/sub keeps nothing for absent subscribers.
 */
#ifndef PGINVAL_APPLY_SUB_H
#define PGINVAL_APPLY_SUB_H

#include <stdbool.h>
#include <stddef.h>

struct ev_loop;
struct apply_sub;
struct redis_conn_opts;

enum apply_sub_event {
	SUB_EVENT_SUBSCRIBED,	/* Redis confirmed the subscription */
	SUB_EVENT_MESSAGE,	/* a message; payload and len are set */
	/* The subscription ended (the link dropped, or the server
	 * unsubscribed us); a new one follows by itself. */
	SUB_EVENT_LOST,
};

/* payload is borrowed for the length of the call, and not NUL-terminated.
 * The callback must not free the subscription. */
typedef void apply_sub_cb(void *arg, enum apply_sub_event ev,
    const char *payload, size_t len);

/* conn: the channel's Redis: its address (with the cluster mode),
 * client name, connect timeout, keepalive and backoff limits are used. */
struct apply_sub *apply_sub_new(struct ev_loop *loop,
    const struct redis_conn_opts *conn, const char *channel,
    apply_sub_cb *cb, void *arg);
void apply_sub_start(struct apply_sub *s);
/* Closes the connection; no callback follows. */
void apply_sub_free(struct apply_sub *s);
bool apply_sub_subscribed(const struct apply_sub *s);
/* "connecting", "subscribing", "subscribed", "backoff"... */
const char *apply_sub_state_name(const struct apply_sub *s);
/* Subscriptions after the first one. */
unsigned long apply_sub_reconnects(const struct apply_sub *s);

#endif
