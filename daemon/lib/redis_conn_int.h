/*
 * The state of a redis_conn, shared by redis_conn.c (the link, its
 * handshake, timeouts and reconnects) and redis_conn_master.c (Sentinel,
 * and what a link that writes checks: ROLE, INFO, the write history).
 * Not for other modules: they see only redis_conn.h.
 */
#ifndef PGINVAL_REDIS_CONN_INT_H
#define PGINVAL_REDIS_CONN_INT_H

#include <ev.h>
#include <hiredis/async.h>
#include <stdbool.h>

#include "lib/backoff.h"
#include "lib/redis_cap.h"
#include "lib/redis_conn.h"
#include "lib/redis_history.h"

struct redis_sentinel;

/* What one reply may cost in the reader (redis_cap.h): far more than any
 * reply pginval asks for (a CLUSTER SLOTS of 1024 masters is about
 * 200 kB, a SCAN page 1000 keys), far less than a hostile server could
 * make hiredis build. Over it, the link is dropped and dialled again. */
#define REDIS_CONN_REPLY_MAX (64 << 20)

struct redis_conn {
	struct ev_loop *loop;
	redis_conn_cb *cb;
	void *arg;
	struct redis_conn_opts o;	/* numbers; strings are below */
	char *name;
	struct redis_addr addr;		/* as configured */
	char *client_name;
	struct backoff backoff;

	/* Sentinel: the master's address comes from it before each
	 * connect; NULL: addr names the server. */
	struct redis_sentinel *sentinel;
	char *master_host;		/* the last address it gave */
	int master_port;
	char master_where[300];

	enum redis_state state;
	redisAsyncContext *ac;
	struct redis_cap cap;		/* on what one reply may cost */
	ev_timer timer;		/* connect timeout, or backoff */
	ev_timer tick;		/* health PING and command timeout */
	int handshake;		/* replies still expected before READY */
	bool established;	/* since the last connect */
	ev_tstamp established_at;
	bool ever_established;
	unsigned long reconnects;
	unsigned outstanding;	/* commands awaiting a reply */
	ev_tstamp progress_at;	/* last reply, or first command */
	/* redis_conn_close(): the link goes, for this reason; replies
	 * still on their way reach their owners as NULL. */
	bool closing;
	char close_why[400];

	/* A link that writes (o.writes): redis_conn_master.c. */
	bool check_warned;	/* ROLE or INFO refused: said once */
	bool role_off;		/* ROLE refused: none after writes */
	bool info_ok;		/* this connect's INFO was read */
	struct redis_node_info info;
	struct redis_history history;
	bool role_inflight;	/* a ROLE after writes awaits its reply */
	ev_tstamp role_sent_at;
	unsigned long acked_since_role;	/* replies after the last ROLE */
	bool forgot;		/* a break seen, FORGOT not yet told */
	char forgot_why[300];
	uint64_t forgot_mark;	/* what it still holds: opts.mark's */
};

/* A command's privdata, as hiredis sees it. */
struct redis_conn_cmd {
	redis_conn_reply_cb *fn;	/* NULL: nobody to tell (PING) */
	void *privdata;
	const char *step;	/* a handshake step: its name */
	/* A step whose refusal is not fatal: fn gets the error reply too. */
	bool optional;
	bool persist;		/* a subscription: runs for every message */
	bool internal;		/* the link's own ROLE: not an owner's reply */
};

/* Adds a handshake step (redis_conn.c). */
void redis_conn_step(struct redis_conn *c, const char *what, bool optional,
    redis_conn_reply_cb *fn, void *privdata, int argc, const char **argv,
    const size_t *argvlen);
/* Sends argv with cmd as its privdata; cmd is freed if it cannot be
 * (redis_conn.c). */
int redis_conn_send(struct redis_conn *c, struct redis_conn_cmd *cmd,
    int argc, const char **argv, const size_t *argvlen);
/* The link is gone, or never came (redis_conn.c): CLOSED, backoff. */
void redis_conn_lost(struct redis_conn *c, const char *why);
/* Frees the link, from outside its own hiredis callbacks; lost(). */
void redis_conn_drop(struct redis_conn *c, const char *why);
/* Connects to host:port (NULL: the configured server). */
void redis_conn_dial(struct redis_conn *c, const char *host, int port);

/* redis_conn_master.c */
/* Closes the link, from anywhere but a connect or disconnect callback,
 * logging why once it is gone. */
void redis_conn_close(struct redis_conn *c, const char *why);
/* Makes c->sentinel anew from c->addr (NULL without sentinels). */
void redis_conn_sentinel(struct redis_conn *c);
/* Asks the sentinels, then dials the master (or lost()). */
void redis_conn_resolve(struct redis_conn *c);
/* The master we wrote to is a replica now (how: "READONLY", "ROLE"):
 * closes the link, saying so. */
void redis_conn_demoted(struct redis_conn *c, const char *how);
/* With sentinels: follows +switch-master. */
void redis_conn_follow(struct redis_conn *c);
/* HANDSHAKE of a link that writes: INFO server replication, ROLE. */
void redis_conn_role_steps(struct redis_conn *c);
/* After an owner's reply (counted in acked_since_role): sends ROLE when
 * the pipeline drained, or 100 ms after the last one. */
void redis_conn_role_after(struct redis_conn *c);
/* The link went: remembers whether replies came after the last ROLE. */
void redis_conn_role_lost(struct redis_conn *c);

#endif
