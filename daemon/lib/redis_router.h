/*
 * One logical Redis that may be several servers: a single server (or the
 * master Sentinel names, which redis_conn finds), or the masters of a
 * Redis Cluster. Commands are sent by hash slot to the master that owns
 * it, each with a copy kept until its final reply: a lost link, MOVED,
 * ASK (with ASKING), TRYAGAIN, CLUSTERDOWN and READONLY are followed and
 * the command is sent again, after a refresh of the slot map where it
 * helps, until an answer that is not one of those reaches its callback.
 * Nothing sent through the router is dropped, so what an owner sends
 * must be idempotent.
 *
 * The slot map comes from CLUSTER SLOTS, asked of any node that answers:
 * at the start, after MOVED (coalesced), while a node is away, and every
 * REDIS_ROUTER_REFRESH seconds. Each master has one redis_conn of its own;
 * the owner hears of each node's link through one callback, to load its
 * scripts, run its sweeps and count reconnects.
 */
#ifndef PGINVAL_REDIS_ROUTER_H
#define PGINVAL_REDIS_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/redis_conn.h"

#define REDIS_ROUTER_REFRESH 60.0	/* seconds between map refreshes */
#define REDIS_ROUTER_ANY (-1)		/* slot: any node (one when not a cluster) */

struct ev_loop;
struct redis_router;
struct redis_router_node;

enum redis_router_event {
	ROUTER_NODE_NEW,	/* a node joined; not connected yet */
	/* the node's redis_conn events, passed on: */
	ROUTER_NODE_HANDSHAKE,
	ROUTER_NODE_READY,
	ROUTER_NODE_CLOSED,
	ROUTER_NODE_LOST,
	ROUTER_NODE_GONE,	/* the node left the map; its link is freed */
	/* the node may have forgotten acknowledged writes (a link that
	 * writes: REDIS_CONN_EVENT_FORGOT, passed on) */
	ROUTER_NODE_FORGOT,
	ROUTER_MAP,		/* a new slot map (n: NULL) */
};

/* May send commands (through the router, or on the node's link from
 * READY, or handshake steps from HANDSHAKE); never frees the router. */
typedef void redis_router_cb(void *arg, enum redis_router_event ev,
    struct redis_router_node *n);

/*
 * conn: the server (its addr says whether it is a cluster seed), the
 * timeouts and the log name; copied. The router's events go to cb.
 */
struct redis_router *redis_router_new(struct ev_loop *loop,
    const struct redis_conn_opts *conn, redis_router_cb *cb, void *arg);
void redis_router_start(struct redis_router *r);
/* Frees every node; replies still awaited come back NULL first. */
void redis_router_free(struct redis_router *r);
/* Timeouts and backoff of every node's link (redis_conn_tune()). */
void redis_router_tune(struct redis_router *r,
    const struct redis_conn_opts *conn);

/*
 * Sends argv (binary-safe, copied) to the master of slot (0..16383, or
 * REDIS_ROUTER_ANY), or to node n when n is not NULL (FLUSHDB on each
 * master; if n leaves the map, the command goes to the master that took
 * its first slot). fn gets the final reply, NULL only when the router is
 * freed first.
 */
void redis_router_command(struct redis_router *r, int slot,
    struct redis_router_node *n, redis_conn_reply_cb *fn, void *privdata,
    int argc, const char **argv, const size_t *argvlen);

/*
 * UNLINKs keys[0..n) (binary-safe) with redis_router_command(): in
 * commands of at most max keys, each of one slot in a cluster (which
 * refuses keys of several slots in one command). fn gets each one's
 * reply, never before this returns; returns how many were sent.
 */
size_t redis_router_unlink(struct redis_router *r, const char *const *keys,
    const size_t *lens, size_t n, size_t max, redis_conn_reply_cb *fn,
    void *privdata);

/*
 * The master of slot (node 0 when not a cluster), for an owner that
 * pipelines on its link itself (the channel's messages, whose order and
 * retries are the owner's); NULL while no map is known.
 */
struct redis_router_node *redis_router_slot_node(
    const struct redis_router *r, int slot);
/* An owner's own command got MOVED (err, len): the map is corrected and
 * refreshed. */
void redis_router_moved(struct redis_router *r, const char *err, size_t len,
    const struct redis_conn *from);
/* New server or credentials (a reload): the nodes are made again, and
 * what waits goes to the new ones. True if that happened; else only the
 * timeouts were applied. */
bool redis_router_configure(struct redis_router *r,
    const struct redis_conn_opts *conn);
/* Whether every node of the map has a ready link. */
bool redis_router_ready(const struct redis_router *r);
bool redis_router_cluster(const struct redis_router *r);
/* The nodes (the masters of a cluster), for sweeps and FLUSHDB. */
/* The owner's mark (redis_conn_opts.mark) moved: redis_conn_mark() on
 * every node. */
void redis_router_mark(struct redis_router *r);
size_t redis_router_nnodes(const struct redis_router *r);
struct redis_router_node *redis_router_node(const struct redis_router *r,
    size_t i);
struct redis_conn *redis_router_conn(const struct redis_router_node *n);
/* The first node's link state ("ready" when every node is ready). */
enum redis_state redis_router_state(const struct redis_router *r);
/* "host:port" of node n. */
const char *redis_router_where(const struct redis_router_node *n);

#endif
