/*
 * Finding a master through Redis Sentinel, on the loop: asking the
 * sentinels in turn for the address of a master name, and following that
 * master's switches. Any link that must reach the current master (a
 * redis_conn, a subscriber on its own socket) resolves with
 * redis_sentinel_resolve() before each connect and reconnects when the
 * follower reports a switch. Knows nothing of pginval.
 */
#ifndef PGINVAL_REDIS_SENTINEL_H
#define PGINVAL_REDIS_SENTINEL_H

#include "lib/redis_addr.h"

struct ev_loop;
struct redis_sentinel;

/*
 * The master's address, borrowed for the call; host NULL when no
 * sentinel gave one (each answer is logged, at warning level). May call
 * redis_sentinel_resolve() again, never redis_sentinel_free().
 */
typedef void redis_sentinel_resolve_cb(void *arg, const char *host, int port);
/* +switch-master for our master name: its new address, borrowed. */
typedef void redis_sentinel_switch_cb(void *arg, const char *host, int port);

struct redis_sentinel_opts {
	const char *name;		/* log prefix: "redis", "target NAME" */
	/* sentinels, master and sentinel_password; copied by _new(). */
	const struct redis_addr *addr;
	double timeout;			/* per sentinel: connect and answer */
	double reconnect_min, reconnect_max;	/* the follower's link */
};

struct redis_sentinel *redis_sentinel_new(struct ev_loop *loop,
    const struct redis_sentinel_opts *opts, void *arg);
/* Not from one of its callbacks. A resolve under way ends silently. */
void redis_sentinel_free(struct redis_sentinel *s);

/*
 * Asks the sentinels, one at a time, starting after the last one that
 * failed: AUTH sentinel_password when set, then SENTINEL
 * get-master-addr-by-name. The first address wins; cb runs once, never
 * from inside this call. A resolve under way is replaced.
 */
void redis_sentinel_resolve(struct redis_sentinel *s,
    redis_sentinel_resolve_cb *cb);
/*
 * For a link that asks synchronously where to connect (redis_psub's
 * locate hook): 0 with the address the sentinels gave last (or a switch
 * announced), -1 when none is known yet. Either way a resolve starts
 * unless one is under way, so the next connect has a fresh answer.
 */
int redis_sentinel_locate(struct redis_sentinel *s, char *host,
    size_t hostlen, int *port) __attribute__((warn_unused_result));
/* Forgets a resolve under way: its callback will not run. */
void redis_sentinel_cancel(struct redis_sentinel *s);
/*
 * Keeps one sentinel link SUBSCRIBEd to +switch-master (moving to the
 * next sentinel, with backoff, when it goes) and calls cb on a switch
 * of our master name.
 */
void redis_sentinel_follow(struct redis_sentinel *s,
    redis_sentinel_switch_cb *cb);
/*
 * Asks sentinel i of a, blocking for up to timeout seconds per step (for
 * `pginval check`, not the loop): 0 with the master's host and port, -1
 * with why (never the password).
 */
int redis_sentinel_ask(const struct redis_addr *a, size_t i, double timeout,
    char *host, size_t hostlen, int *port, char *why, size_t whylen)
    __attribute__((warn_unused_result));
#endif
