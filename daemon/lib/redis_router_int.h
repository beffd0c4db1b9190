/*
 * The router's state, shared by redis_router.c (nodes, routing, replies)
 * and redis_router_map.c (the slot map: CLUSTER SLOTS, its refreshes and
 * the shards' write history). Not for other modules: they see only
 * redis_router.h.
 */
#ifndef PGINVAL_REDIS_ROUTER_INT_H
#define PGINVAL_REDIS_ROUTER_INT_H

#include <ev.h>
#include <stdbool.h>

#include "lib/fifo.h"
#include "lib/log.h"
#include "lib/redis_addr.h"
#include "lib/redis_router.h"
#include "lib/redis_slots.h"

#define REDIS_ROUTER_RETRY 0.05	/* TRYAGAIN, CLUSTERDOWN...: seconds */
#define REDIS_ROUTER_ASKED 0.1	/* least time between asked-for refreshes */
#define REDIS_ROUTER_AWAY 1.0	/* refreshes while a node is away */
/* Redirects a command follows at once; past them it waits
 * REDIS_ROUTER_RETRY (a map in flux, or a server sending it round in
 * circles costs no busy loop). */
#define REDIS_ROUTER_HOPS 5
/* Masters a map may name: a bigger one is refused. */
#define REDIS_ROUTER_NODES_MAX 1024

struct rcmd {
	struct fifo_node node;	/* first */
	int slot;
	struct redis_router_node *to;	/* a node's own command; or NULL */
	struct redis_router_node *ask;	/* ASK: this node, once, with ASKING */
	unsigned hops;		/* redirects followed in a row */
	redis_conn_reply_cb *fn;
	void *privdata;
	int argc;
	const char **argv;	/* one allocation with argvlen and the bytes */
	size_t *argvlen;
};

struct redis_router_node {
	struct redis_router *r;
	struct redis_conn *conn;
	char *host;
	int port;
	char where[300];
	int first_slot;		/* -1: none (not a master in the map) */
	int home_slot;		/* the first slot it ever owned, or -1 */
	char **shard;		/* ids of its replicas in the last map */
	size_t nshard;
	struct fifo wait, requeue;
	bool gone;
};

struct redis_router {
	struct ev_loop *loop;
	redis_router_cb *cb;
	void *arg;
	struct redis_conn_opts o;	/* name and addr are ours */
	struct redis_addr addr;
	char *name;
	bool cluster;
	struct redis_router_node **nodes;
	size_t nnodes;
	struct redis_router_node *by_slot[REDIS_SLOTS];
	bool have_map;
	bool freeing;		/* no more events */
	struct fifo unrouted, later;
	size_t inflight;
	bool refreshing;	/* a CLUSTER SLOTS in flight */
	double refreshed;	/* when the last one was sent */
	ev_timer refresh_timer, later_timer, reap_timer;
	struct redis_router_node **dead;	/* freed from reap_timer */
	size_t ndead;
	struct log_limit complaints;
};

/* redis_router.c */
struct redis_router_node *router_node_find(struct redis_router *r,
    const char *host, int port);
/* A new node, its link made but not started. */
struct redis_router_node *router_node_add(struct redis_router *r,
    const char *host, int port);
void router_node_drop(struct redis_router *r, struct redis_router_node *n);
void router_route(struct redis_router *r, struct rcmd *c);

/* redis_router_map.c */
void router_refresh(struct redis_router *r);
void router_refresh_cb(struct ev_loop *loop, ev_timer *w, int revents);
void router_node_shard(struct redis_router_node *n, const struct redis_node *m);

#endif
