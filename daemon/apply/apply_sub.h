/*
 * The subscription of pginval apply: a hiredis async connection in
 * subscribe mode on the channel's Redis. In hiredis 0.14 a subscribed
 * context accepts nothing but (P)SUBSCRIBE and (P)UNSUBSCRIBE, so it only
 * listens; targets have connections of their own. It reconnects by
 * itself, with backoff and jitter, and reports each (re)subscription so
 * that the owner can treat it as a gap: pub/sub keeps nothing for absent
 * subscribers.
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
	SUB_EVENT_LOST,		/* the link dropped; a reconnect follows */
};

/* payload is borrowed for the length of the call, and not NUL-terminated.
 * The callback must not free the subscription. */
typedef void apply_sub_cb(void *arg, enum apply_sub_event ev,
    const char *payload, size_t len);

/* conn: the channel's Redis (its name and mode are set here). */
struct apply_sub *apply_sub_new(struct ev_loop *loop,
    const struct redis_conn_opts *conn, const char *channel,
    apply_sub_cb *cb, void *arg);
void apply_sub_start(struct apply_sub *s);
/* Closes the connection; no callback follows. */
void apply_sub_free(struct apply_sub *s);
bool apply_sub_subscribed(const struct apply_sub *s);
const char *apply_sub_state_name(const struct apply_sub *s);
unsigned long apply_sub_reconnects(const struct apply_sub *s);

#endif
