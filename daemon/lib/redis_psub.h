/*
 * A subscriber link on the loop: one channel, subscribed with SUBSCRIBE
 * (one Redis, or a Redis Cluster in broadcast mode) or SSUBSCRIBE (a
 * Redis Cluster's sharded pub/sub, at the node that owns the channel's
 * slot). hiredis 0.14's async API cannot carry a sharded subscription,
 * so this link drives a non-blocking hiredis context itself and decodes
 * with hiredis's reader. It connects with a timeout that lasts until the
 * subscription is confirmed, logs in (AUTH, SELECT, CLIENT SETNAME),
 * follows -MOVED to the owner, remembers the cluster nodes it met so
 * that a dead node is skipped, and reconnects with backoff and jitter.
 * Every way of losing the subscription (the link drops, the server
 * unsubscribes us because the slot moved or the node was demoted) is
 * reported as LOST, and every new subscription as SUBSCRIBED: pub/sub
 * keeps nothing for absent subscribers, so the owner treats a
 * resubscription as a gap. Knows nothing of pginval.
 */
#ifndef PGINVAL_REDIS_PSUB_H
#define PGINVAL_REDIS_PSUB_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/redis_addr.h"

struct ev_loop;
struct redis_psub;

/* The largest message accepted when the owner sets none; a larger reply
 * drops the link (and so costs a resubscription). */
#define REDIS_PSUB_MAX_MESSAGE (16u << 20)

enum redis_psub_state {
	REDIS_PSUB_STOPPED,
	REDIS_PSUB_CONNECTING,
	REDIS_PSUB_SUBSCRIBING,	/* logging in, (S)SUBSCRIBE sent */
	REDIS_PSUB_SUBSCRIBED,
	REDIS_PSUB_BACKOFF,
};

enum redis_psub_event {
	REDIS_PSUB_EVENT_SUBSCRIBED,	/* the server confirmed it */
	REDIS_PSUB_EVENT_MESSAGE,	/* payload and len are set */
	REDIS_PSUB_EVENT_LOST,		/* after SUBSCRIBED only */
};

/*
 * payload is borrowed for the length of the call, and not
 * NUL-terminated. The callback must not free the link.
 */
typedef void redis_psub_cb(void *arg, enum redis_psub_event ev,
    const char *payload, size_t len);

/*
 * Where to connect, asked before every connect when set: the hook for a
 * master that Sentinel names. Fills host (NUL-terminated, at most hostlen
 * bytes with the NUL) and *port and returns 0, or returns -1 when no
 * address is known yet (the link backs off and asks again).
 */
typedef int redis_psub_locate_cb(void *arg, char *host, size_t hostlen,
    int *port);

struct redis_psub_opts {
	const char *name;	/* log prefix: "channel"... */
	/* Borrowed; copied. Its cluster mode picks SSUBSCRIBE (on) or
	 * SUBSCRIBE (off, broadcast); db is SELECTed outside a cluster. */
	const struct redis_addr *addr;
	const char *channel;
	const char *client_name;	/* CLIENT SETNAME; NULL: none */
	double connect_timeout;	/* from connect to the confirmation */
	double keepalive;	/* TCP keepalive idle time, seconds; 0: none */
	double reconnect_min, reconnect_max;
	size_t max_message;	/* bytes; 0: REDIS_PSUB_MAX_MESSAGE */
	redis_psub_locate_cb *locate;	/* NULL: the URL, or cluster nodes */
	void *locate_arg;
};

/* Strings in opts, and addr, are copied. */
struct redis_psub *redis_psub_new(struct ev_loop *loop,
    const struct redis_psub_opts *opts, redis_psub_cb *cb, void *arg);
void redis_psub_start(struct redis_psub *p);
/*
 * Drops the link (reporting LOST if it was subscribed) and connects
 * again at once, asking locate first: for an owner that learned that
 * the server moved (Sentinel's +switch-master). why is logged.
 */
void redis_psub_reconnect(struct redis_psub *p, const char *why);
/* Closes the link; no callback follows. Not from p's callback. */
void redis_psub_free(struct redis_psub *p);

enum redis_psub_state redis_psub_state(const struct redis_psub *p);
const char *redis_psub_state_name(enum redis_psub_state st);
/* "host:port" (or the socket path) of the node of the current or last
 * link. */
const char *redis_psub_where(const struct redis_psub *p);
/* Subscriptions after the first one. */
unsigned long redis_psub_resubscriptions(const struct redis_psub *p);

#endif
