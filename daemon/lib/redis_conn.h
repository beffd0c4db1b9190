/*
 * One hiredis async connection on the loop, with its own reconnect
 * policy: the part that the Redis sink, the targets of pginval apply and
 * its subscription share. It connects with a timeout, runs the handshake
 * (AUTH, SELECT, CLIENT SETNAME and the owner's own steps), proves an
 * idle link alive with PING, drops one whose replies stop coming, and
 * reconnects with backoff and jitter. The owner sends commands through
 * redis_conn_command() and hears about the link through one callback.
 *
 * With sentinels in the address, each connect first asks them where the
 * master is, and a +switch-master of that master drops the link, to
 * connect again. A link that writes (opts.writes) also checks, at each
 * connect, that the server is a master and that it still holds what it
 * acknowledged before (INFO + ROLE, the rule of redis_history.h), and
 * reads ROLE after writes to know how far that goes. A write refused
 * with READONLY counts as a lost link.
 */
#ifndef PGINVAL_REDIS_CONN_H
#define PGINVAL_REDIS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/redis_addr.h"

struct ev_loop;
struct redis_conn;
struct redis_history;
struct redisReply;

enum redis_state {
	REDIS_STATE_STOPPED,
	REDIS_STATE_CONNECTING,
	REDIS_STATE_HANDSHAKE,	/* AUTH, SELECT... sent */
	REDIS_STATE_READY,
	REDIS_STATE_BACKOFF,
};

enum redis_conn_event {
	/* Connected: the owner may add steps with redis_conn_handshake(). */
	REDIS_CONN_EVENT_HANDSHAKE,
	/* The handshake succeeded: commands may be sent. */
	REDIS_CONN_EVENT_READY,
	/* The link is gone, or a connect failed. Replies still pending have
	 * come back NULL; the owner puts back what it had in flight. */
	REDIS_CONN_EVENT_CLOSED,
	/* After CLOSED, if the link had connected: a reconnect is
	 * scheduled and the state is BACKOFF. */
	REDIS_CONN_EVENT_LOST,
	/* Right after READY, on a link that writes: the server may have
	 * forgotten writes it acknowledged before (restarted without its
	 * data or from an older snapshot, a replica promoted while behind);
	 * redis_conn_forgot_reason() says why. Already logged. */
	REDIS_CONN_EVENT_FORGOT,
};

/*
 * The callback may send commands (from READY) and add handshake steps
 * (from HANDSHAKE); it never frees the connection.
 */
typedef void redis_conn_cb(void *arg, enum redis_conn_event ev);

/*
 * A reply, borrowed for the length of the call; NULL when the link went
 * before the answer came. arg is the owner's (redis_conn_new()). The
 * callback may send commands, never free the connection.
 */
typedef void redis_conn_reply_cb(void *arg, struct redisReply *reply,
    void *privdata);

struct redis_conn_opts {
	const char *name;	/* log prefix: "redis", "target NAME"... */
	const struct redis_addr *addr;	/* borrowed; copied by _new() */
	const char *client_name;	/* CLIENT SETNAME; NULL: none */
	double connect_timeout;
	double command_timeout;	/* the oldest reply awaited this long: dead */
	double health_interval;	/* PING when idle this long; 0: never */
	double keepalive;	/* TCP keepalive idle time, seconds; 0: none */
	double reconnect_min, reconnect_max;
	/*
	 * A subscriber: hiredis accepts nothing but (P)SUBSCRIBE and
	 * (P)UNSUBSCRIBE on it once subscribed. A command's callback
	 * then runs for every message, and once more with NULL when the
	 * link goes. There is no PING and no command timeout: the
	 * connect timeout lasts until the first reply to a command (the
	 * subscription's confirmation), and keepalive finds a dead peer.
	 */
	bool subscriber;
	/*
	 * A link that writes: at each connect ROLE must say master (else the
	 * link closes and backs off; with sentinels they are asked again),
	 * and INFO server replication is compared with what this link saw
	 * before (REDIS_CONN_EVENT_FORGOT). A server that refuses ROLE or
	 * INFO is used all the same, with one warning.
	 */
	bool writes;
	/* For the log line of a lost link, "N <backlog_unit> queued": the
	 * owner's queue once CLOSED is handled. Borrowed; may be NULL. */
	const size_t *backlog;
	const char *backlog_unit;
	/* A link that writes: the owner's mark, read with each ROLE after
	 * writes and kept as a checkpoint of the history, so that a FORGOT
	 * can say which of the owner's writes the server surely still has
	 * (redis_conn_forgot_mark()). The owner sets it to a position that
	 * only grows and whose writes were all answered; 0: none. Borrowed;
	 * may be NULL. */
	const uint64_t *mark;
};

/* Strings in opts, and addr, are copied; backlog is not. */
struct redis_conn *redis_conn_new(struct ev_loop *loop,
    const struct redis_conn_opts *opts, redis_conn_cb *cb, void *arg);
void redis_conn_start(struct redis_conn *c);
/* Closes the link. Pending reply callbacks run, with NULL, before it
 * returns; no event follows. Not from one of c's callbacks. */
void redis_conn_free(struct redis_conn *c);

/*
 * Sends argv (binary-safe) and counts it until its reply arrives. Only
 * when redis_conn_ready(). Returns -1 if it cannot be sent (the link is
 * closing): fn will not run for it.
 */
int redis_conn_command(struct redis_conn *c, redis_conn_reply_cb *fn,
    void *privdata, int argc, const char **argv, const size_t *argvlen)
    __attribute__((warn_unused_result));
/*
 * From the HANDSHAKE event only: one more command answered before READY.
 * An error reply is logged as "<what> failed" and closes the link, or,
 * when optional, is logged at debug level and passed to fn like a
 * success. fn, if set, gets the reply. what is static.
 */
void redis_conn_handshake(struct redis_conn *c, const char *what,
    bool optional, redis_conn_reply_cb *fn, void *privdata, int argc,
    const char **argv, const size_t *argvlen);
/* From a reply callback: closes the link once the replies already on
 * their way are in; CLOSED follows. */
void redis_conn_disconnect(struct redis_conn *c);

/* Applies the timeouts, the health interval and the backoff limits of
 * opts; the server, credentials and names stay as they are. */
void redis_conn_tune(struct redis_conn *c, const struct redis_conn_opts *opts);
/* redis_conn_tune(), and also the address (server, credentials,
 * database and where). When the first three changed, the link is dropped and made again
 * with them; returns true then. */
bool redis_conn_configure(struct redis_conn *c,
    const struct redis_conn_opts *opts);

/* READY: commands may be sent. With sentinels, redis_conn_where() is
 * the master's address once they gave it. */
bool redis_conn_ready(const struct redis_conn *c);
enum redis_state redis_conn_state(const struct redis_conn *c);
const char *redis_state_name(enum redis_state st);
const char *redis_conn_where(const struct redis_conn *c);
/*
 * What is known of the server's write history (redis_history.h): kept
 * across reconnects, so that a router may move it to the link of a
 * promoted replica. _set_ replaces it; forgotten on an address change.
 */
const struct redis_history *redis_conn_history(const struct redis_conn *c);
void redis_conn_set_history(struct redis_conn *c,
    const struct redis_history *h);
/* Why the server may have forgotten writes, during the FORGOT event;
 * NULL otherwise. */
const char *redis_conn_forgot_reason(const struct redis_conn *c);
/* The owner's mark (opts.mark) moved: kept at once as a checkpoint when
 * the last ROLE covers every reply so far (else the next ROLE keeps it). */
void redis_conn_mark(struct redis_conn *c);
/* During the FORGOT event: the newest mark (opts.mark) whose writes the
 * server still holds, or 0 when none is known. */
uint64_t redis_conn_forgot_mark(const struct redis_conn *c);
/* Times the link was established again after the first time (READY; for
 * a subscriber, the first reply). */
unsigned long redis_conn_reconnects(const struct redis_conn *c);

#endif
