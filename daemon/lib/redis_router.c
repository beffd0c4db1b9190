/*
 * Routing by slot over one redis_conn per master (redis_router.h). A
 * command lives in one of these places until its final reply: a node's
 * wait list (that node's link is not ready), in flight on a link, the
 * router's unrouted list (no map yet, or its node left) or its later list
 * (TRYAGAIN and friends, sent again after REDIS_ROUTER_RETRY). Replies
 * that a dropped link returns as NULL come back to the node's requeue
 * list in their order and go to the front of its wait list.
 */
#include "lib/redis_router.h"
#include "lib/fifo.h"
#include "lib/log.h"
#include "lib/redis_history.h"
#include "lib/redis_slots.h"
#include "lib/xalloc.h"

#include <ev.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REDIS_ROUTER_RETRY 0.05	/* TRYAGAIN, CLUSTERDOWN...: seconds */
#define REDIS_ROUTER_ASKED 0.1	/* least time between asked-for refreshes */
#define REDIS_ROUTER_AWAY 1.0	/* refreshes while a node is away */

struct rcmd {
	struct fifo_node node;	/* first */
	int slot;
	struct redis_router_node *to;	/* a node's own command; or NULL */
	struct redis_router_node *ask;	/* ASK: this node, once, with ASKING */
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
	void *data;
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

static void router_route(struct redis_router *r, struct rcmd *c);
static void router_refresh(struct redis_router *r);
static void router_pump(struct redis_router_node *n);

static struct rcmd *
rcmd_new(int argc, const char **argv, const size_t *argvlen)
{
	size_t bytes = 0;
	struct rcmd *c;
	char *p;

	for (int i = 0; i < argc; i++)
		bytes += (argvlen ? argvlen[i] : strlen(argv[i])) + 1;
	c = xcalloc(1, sizeof(*c) + (size_t)argc * (sizeof(char *) +
	    sizeof(size_t)) + bytes);
	c->argc = argc;
	c->argv = (const char **)(void *)(c + 1);
	c->argvlen = (size_t *)(c->argv + argc);
	p = (char *)(c->argvlen + argc);
	for (int i = 0; i < argc; i++) {
		size_t len = argvlen ? argvlen[i] : strlen(argv[i]);

		memcpy(p, argv[i], len);
		p[len] = '\0';
		c->argv[i] = p;
		c->argvlen[i] = len;
		p += len + 1;
	}
	return c;
}

/* -- nodes ------------------------------------------------------------------ */

static void router_conn_cb(void *arg, enum redis_conn_event ev);

static struct redis_router_node *
router_node_find(struct redis_router *r, const char *host, int port)
{
	for (size_t i = 0; i < r->nnodes; i++)
		if (r->nodes[i]->port == port &&
		    strcmp(r->nodes[i]->host, host) == 0)
			return r->nodes[i];
	return NULL;
}

static struct redis_router_node *
router_node_add(struct redis_router *r, const char *host, int port)
{
	struct redis_router_node *n = xcalloc(1, sizeof(*n));
	struct redis_conn_opts co = r->o;
	struct redis_addr a = { 0 };
	char name[400];

	n->r = r;
	n->host = xstrdup(host);
	n->port = port;
	n->first_slot = n->home_slot = -1;
	redis_hostport_format(host, port, n->where, sizeof(n->where));
	redis_addr_copy(&a, &r->addr);
	if (r->cluster) {
		free(a.host);
		free(a.where);
		a.host = xstrdup(host);
		a.port = port;
		a.where = xstrdup(n->where);
		snprintf(name, sizeof(name), "%s %s", r->name, n->where);
	} else {
		snprintf(name, sizeof(name), "%s", r->name);
	}
	co.name = name;
	co.addr = &a;
	n->conn = redis_conn_new(r->loop, &co, router_conn_cb, n);
	redis_addr_free(&a);
	r->nodes = xrealloc(r->nodes, (r->nnodes + 1) * sizeof(*r->nodes));
	r->nodes[r->nnodes++] = n;
	r->cb(r->arg, ROUTER_NODE_NEW, n);
	return n;
}

/* Takes n out of the map; its commands go elsewhere, its link and struct
 * are freed from the reap timer (n may be in one of its own callbacks). */
static void
router_node_drop(struct redis_router *r, struct redis_router_node *n)
{
	size_t i;

	for (i = 0; i < r->nnodes && r->nodes[i] != n; i++)
		;
	if (i == r->nnodes)
		return;
	memmove(&r->nodes[i], &r->nodes[i + 1],
	    (r->nnodes - i - 1) * sizeof(*r->nodes));
	r->nnodes--;
	n->gone = true;
	r->dead = xrealloc(r->dead, (r->ndead + 1) * sizeof(*r->dead));
	r->dead[r->ndead++] = n;
	ev_timer_start(r->loop, &r->reap_timer);
}

/* Remembers the replicas the map lists with n (none: forgets them). */
static void
router_node_shard(struct redis_router_node *n, const struct redis_node *m)
{
	for (size_t i = 0; i < n->nshard; i++)
		free(n->shard[i]);
	free(n->shard);
	n->shard = NULL;
	n->nshard = 0;
	if (m == NULL || m->nreplicas == 0)
		return;
	n->shard = xcalloc(m->nreplicas, sizeof(*n->shard));
	for (size_t i = 0; i < m->nreplicas; i++)
		n->shard[n->nshard++] = xstrdup(m->replicas[i]);
}

/*
 * A master new to the router that was a replica of one it knew (a
 * failover) takes over what that link knew of the shard's write history,
 * so that writes the old master acknowledged and the replica never got
 * are noticed at its connect (redis_history.h).
 */
static void
router_node_inherit(struct redis_router *r, struct redis_router_node *n,
    const char *id)
{
	for (size_t i = 0; i < r->nnodes; i++)
		for (size_t j = 0; j < r->nodes[i]->nshard; j++)
			if (r->nodes[i] != n &&
			    strcmp(r->nodes[i]->shard[j], id) == 0) {
				redis_conn_set_history(n->conn,
				    redis_conn_history(r->nodes[i]->conn));
				return;
			}
}

static void
router_node_free(struct redis_router *r, struct redis_router_node *n)
{
	struct rcmd *c;

	/* The NULL replies of what was in flight land in n->requeue. */
	redis_conn_free(n->conn);
	n->conn = NULL;
	if (!r->freeing)
		r->cb(r->arg, ROUTER_NODE_GONE, n);
	fifo_prepend(&n->wait, &n->requeue);
	while ((c = (struct rcmd *)fifo_pop(&n->wait)) != NULL) {
		if (c->to == n)
			c->to = NULL;
		if (c->ask == n)
			c->ask = NULL;
		if (c->to == NULL && c->slot == REDIS_ROUTER_ANY &&
		    n->home_slot >= 0)
			c->slot = n->home_slot;
		fifo_push(&r->unrouted, &c->node);
	}
	router_node_shard(n, NULL);
	free(n->host);
	free(n);
}

static void
router_reap_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct redis_router *r = w->data;
	struct rcmd *c;
	struct fifo again = { 0 };

	(void)loop;
	(void)revents;
	while (r->ndead > 0)
		router_node_free(r, r->dead[--r->ndead]);
	fifo_prepend(&again, &r->unrouted);
	while ((c = (struct rcmd *)fifo_pop(&again)) != NULL)
		router_route(r, c);
}

/* -- sending ---------------------------------------------------------------- */

static void router_reply_cb(void *arg, redisReply *reply, void *privdata);

static void
router_ignore_cb(void *arg, redisReply *reply, void *privdata)
{
	(void)arg;
	(void)reply;
	(void)privdata;
}

static int
router_send(struct redis_router_node *n, struct rcmd *c)
{
	const char *asking[] = { "ASKING" };

	if (c->ask == n && redis_conn_command(n->conn, router_ignore_cb,
	    NULL, 1, asking, NULL) == -1)
		return -1;
	if (redis_conn_command(n->conn, router_reply_cb, c, c->argc,
	    c->argv, c->argvlen) == -1)
		return -1;
	n->r->inflight++;
	return 0;
}

static void
router_pump(struct redis_router_node *n)
{
	struct rcmd *c;

	while (redis_conn_ready(n->conn) &&
	    (c = (struct rcmd *)fifo_pop(&n->wait)) != NULL)
		if (router_send(n, c) == -1) {
			fifo_push(&n->requeue, &c->node);
			break;
		}
}

/* Where c goes now: its node, its ASK node, or the slot's master. */
static void
router_route(struct redis_router *r, struct rcmd *c)
{
	struct redis_router_node *n = c->ask ? c->ask : c->to;

	if (n == NULL && !r->cluster)
		n = r->nnodes > 0 ? r->nodes[0] : NULL;
	if (n == NULL && r->have_map)
		n = r->by_slot[c->slot >= 0 ? c->slot : 0];
	if (n == NULL) {
		fifo_push(&r->unrouted, &c->node);
		router_refresh(r);
		return;
	}
	fifo_push(&n->wait, &c->node);
	router_pump(n);
}

void
redis_router_command(struct redis_router *r, int slot,
    struct redis_router_node *n, redis_conn_reply_cb *fn, void *privdata,
    int argc, const char **argv, const size_t *argvlen)
{
	struct rcmd *c = rcmd_new(argc, argv, argvlen);

	c->slot = slot;
	c->to = n;
	c->fn = fn;
	c->privdata = privdata;
	router_route(r, c);
}

static void
router_later(struct redis_router *r, struct rcmd *c)
{
	fifo_push(&r->later, &c->node);
	if (!ev_is_active(&r->later_timer)) {
		ev_timer_set(&r->later_timer, REDIS_ROUTER_RETRY, 0);
		ev_timer_start(r->loop, &r->later_timer);
	}
}

static void
router_later_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct redis_router *r = w->data;
	struct fifo again = r->later;
	struct rcmd *c;

	(void)loop;
	(void)revents;
	memset(&r->later, 0, sizeof(r->later));
	while ((c = (struct rcmd *)fifo_pop(&again)) != NULL)
		router_route(r, c);
}

static void
router_reply_cb(void *arg, redisReply *reply, void *privdata)
{
	struct redis_router_node *n = arg;
	struct redis_router *r = n->r;
	struct rcmd *c = privdata;
	struct redis_redirect to;
	enum redis_err_kind kind;

	if (r->inflight > 0)
		r->inflight--;
	if (reply == NULL) {
		/* The link dropped before the reply: send it again later. */
		fifo_push(&n->requeue, &c->node);
		return;
	}
	if (c->ask == n)
		c->ask = NULL;
	kind = reply->type == REDIS_REPLY_ERROR ?
	    redis_err_classify(reply->str, reply->len, &to) : REDIS_ERR_OTHER;
	if (kind == REDIS_ERR_MOVED || kind == REDIS_ERR_ASK) {
		struct redis_router_node *dst;

		if (!r->cluster)
			goto final;
		dst = router_node_find(r, to.host[0] ? to.host : n->host,
		    to.port);
		if (dst == NULL)
			dst = router_node_add(r, to.host[0] ? to.host :
			    n->host, to.port), redis_conn_start(dst->conn);
		if (kind == REDIS_ERR_MOVED) {
			r->by_slot[to.slot % REDIS_SLOTS] = dst;
			router_refresh(r);
		} else {
			c->ask = dst;
		}
		router_route(r, c);
		return;
	}
	if (kind == REDIS_ERR_TRYAGAIN || kind == REDIS_ERR_CLUSTERDOWN ||
	    kind == REDIS_ERR_LOADING || kind == REDIS_ERR_MASTERDOWN ||
	    (kind == REDIS_ERR_READONLY && r->cluster)) {
		if (log_limit(&r->complaints, ev_now(r->loop), "retries"))
			log_warnx("%s: %s answered %s; trying again", r->name,
			    n->where, reply->str);
		if (kind != REDIS_ERR_TRYAGAIN)
			router_refresh(r);
		router_later(r, c);
		return;
	}
	if (kind == REDIS_ERR_READONLY) {
		/* A replica now (Sentinel moved the master): find it again. */
		fifo_push(&n->requeue, &c->node);
		redis_conn_disconnect(n->conn);
		return;
	}
final:
	c->fn(r->arg, reply, c->privdata);
	free(c);
	router_pump(n);
}

/* -- the slot map ------------------------------------------------------------ */

static void
router_map_cb(void *arg, redisReply *reply, void *privdata)
{
	struct redis_router_node *n = arg;
	struct redis_router *r = n->r;
	struct redis_slot_map m = { 0 };
	struct redis_router_node **masters;
	unsigned moved = 0;
	char err[256];

	(void)privdata;
	r->refreshing = false;
	if (reply == NULL)
		return;
	if (reply->type == REDIS_REPLY_ERROR) {
		log_error("%s: CLUSTER SLOTS failed on %s: %s (is it a "
		    "cluster? set cluster = off for a single Redis)", r->name,
		    n->where, reply->str);
		return;
	}
	if (redis_slots_parse(&m, reply, n->host, err, sizeof(err)) == -1) {
		log_error("%s: CLUSTER SLOTS from %s: %s; keeping the map I "
		    "have", r->name, n->where, err);
		return;
	}
	masters = xcalloc(m.nmasters, sizeof(*masters));
	for (size_t i = 0; i < m.nmasters; i++) {
		masters[i] = router_node_find(r, m.masters[i].host,
		    m.masters[i].port);
		if (masters[i] == NULL) {
			masters[i] = router_node_add(r, m.masters[i].host,
			    m.masters[i].port);
			redis_conn_start(masters[i]->conn);
		}
		if (!redis_conn_history(masters[i]->conn)->known)
			router_node_inherit(r, masters[i], m.masters[i].id);
		masters[i]->first_slot = -1;
	}
	for (size_t i = 0; i < m.nmasters; i++)
		router_node_shard(masters[i], &m.masters[i]);
	for (int s = REDIS_SLOTS - 1; s >= 0; s--) {
		if (r->by_slot[s] != masters[m.owner[s]])
			moved++;
		r->by_slot[s] = masters[m.owner[s]];
		r->by_slot[s]->first_slot = s;
	}
	for (size_t i = 0; i < m.nmasters; i++)
		if (masters[i]->home_slot < 0)
			masters[i]->home_slot = masters[i]->first_slot;
	free(masters);
	/* Nodes that own no slot (a replica now, failed, or the seed) go;
	 * what waits for them is routed again. */
	for (size_t i = r->nnodes; i-- > 0; )
		if (r->nodes[i]->first_slot < 0)
			router_node_drop(r, r->nodes[i]);
	if (!r->have_map)
		log_info("%s: %zu masters in the cluster", r->name, m.nmasters);
	else if (moved > 0)
		log_info("%s: %u slots have a new master; %zu masters in the "
		    "cluster", r->name, moved, m.nmasters);
	r->have_map = true;
	redis_slots_free(&m);
	r->cb(r->arg, ROUTER_MAP, NULL);
	ev_timer_start(r->loop, &r->reap_timer);	/* routes unrouted */
}

/* Asks any ready node for CLUSTER SLOTS: one at a time, and not more
 * often than REDIS_ROUTER_ASKED. */
static void
router_refresh(struct redis_router *r)
{
	const char *argv[] = { "CLUSTER", "SLOTS" };
	double now = ev_now(r->loop);

	if (!r->cluster || r->refreshing)
		return;
	if (now - r->refreshed < REDIS_ROUTER_ASKED) {
		ev_timer_stop(r->loop, &r->refresh_timer);
		ev_timer_set(&r->refresh_timer, REDIS_ROUTER_ASKED, 0);
		ev_timer_start(r->loop, &r->refresh_timer);
		return;
	}
	for (size_t i = 0; i < r->nnodes; i++) {
		struct redis_router_node *n = r->nodes[i];

		if (redis_conn_ready(n->conn) &&
		    redis_conn_command(n->conn, router_map_cb, NULL, 2, argv,
		    NULL) == 0) {
			r->refreshing = true;
			r->refreshed = now;
			break;
		}
	}
	/* Asked again by the timer: periodically, or soon while nothing
	 * answers. */
	ev_timer_stop(r->loop, &r->refresh_timer);
	ev_timer_set(&r->refresh_timer, r->refreshing && redis_router_ready(r) ?
	    REDIS_ROUTER_REFRESH : REDIS_ROUTER_AWAY, 0);
	ev_timer_start(r->loop, &r->refresh_timer);
}

static void
router_refresh_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct redis_router *r = w->data;

	(void)loop;
	(void)revents;
	if (r->nnodes == 0)	/* every node left: start from the seed */
		redis_conn_start(router_node_add(r, r->addr.host,
		    r->addr.port)->conn);
	router_refresh(r);
}

static void
router_conn_cb(void *arg, enum redis_conn_event ev)
{
	struct redis_router_node *n = arg;
	struct redis_router *r = n->r;

	switch (ev) {
	case REDIS_CONN_EVENT_HANDSHAKE:
		r->cb(r->arg, ROUTER_NODE_HANDSHAKE, n);
		break;
	case REDIS_CONN_EVENT_READY:
		r->cb(r->arg, ROUTER_NODE_READY, n);
		if (r->cluster && !r->have_map)
			router_refresh(r);
		router_pump(n);
		break;
	case REDIS_CONN_EVENT_CLOSED:
		fifo_prepend(&n->wait, &n->requeue);
		r->cb(r->arg, ROUTER_NODE_CLOSED, n);
		break;
	case REDIS_CONN_EVENT_LOST:
		r->cb(r->arg, ROUTER_NODE_LOST, n);
		router_refresh(r);	/* a failover moves its slots */
		break;
	case REDIS_CONN_EVENT_FORGOT:
		r->cb(r->arg, ROUTER_NODE_FORGOT, n);
		break;
	}
}

/* -- the router --------------------------------------------------------------- */

struct redis_router *
redis_router_new(struct ev_loop *loop, const struct redis_conn_opts *conn,
    redis_router_cb *cb, void *arg)
{
	struct redis_router *r = xcalloc(1, sizeof(*r));

	r->loop = loop;
	r->cb = cb;
	r->arg = arg;
	r->o = *conn;
	r->name = xstrdup(conn->name);
	redis_addr_copy(&r->addr, conn->addr);
	r->cluster = r->addr.cluster != REDIS_CLUSTER_OFF;
	r->o.name = NULL;
	r->o.addr = NULL;
	ev_timer_init(&r->refresh_timer, router_refresh_cb, 0, 0);
	ev_timer_init(&r->later_timer, router_later_cb, 0, 0);
	ev_timer_init(&r->reap_timer, router_reap_cb, 0, 0);
	r->refresh_timer.data = r->later_timer.data = r->reap_timer.data = r;
	return r;
}

void
redis_router_start(struct redis_router *r)
{
	/* Not a cluster: the one server. A cluster: the seed, until the map
	 * names the masters. */
	redis_conn_start(router_node_add(r, r->addr.host ? r->addr.host : "",
	    r->addr.port)->conn);
}

static void
rcmd_list_fail(struct redis_router *r, struct fifo *l)
{
	struct rcmd *c;

	while ((c = (struct rcmd *)fifo_pop(l)) != NULL) {
		c->fn(r->arg, NULL, c->privdata);
		free(c);
	}
}

void
redis_router_free(struct redis_router *r)
{
	if (r == NULL)
		return;
	r->freeing = true;
	while (r->nnodes > 0)
		router_node_drop(r, r->nodes[r->nnodes - 1]);
	while (r->ndead > 0)
		router_node_free(r, r->dead[--r->ndead]);
	ev_timer_stop(r->loop, &r->refresh_timer);
	ev_timer_stop(r->loop, &r->later_timer);
	ev_timer_stop(r->loop, &r->reap_timer);
	rcmd_list_fail(r, &r->unrouted);
	rcmd_list_fail(r, &r->later);
	free(r->dead);
	free(r->nodes);
	redis_addr_free(&r->addr);
	free(r->name);
	free(r);
}

void
redis_router_tune(struct redis_router *r, const struct redis_conn_opts *conn)
{
	const char *name = r->o.name;
	const struct redis_addr *addr = r->o.addr;

	r->o = *conn;
	r->o.name = name;
	r->o.addr = addr;
	for (size_t i = 0; i < r->nnodes; i++)
		redis_conn_tune(r->nodes[i]->conn, conn);
}

struct redis_router_node *
redis_router_slot_node(const struct redis_router *r, int slot)
{
	if (!r->cluster)
		return r->nnodes > 0 ? r->nodes[0] : NULL;
	return r->have_map ? r->by_slot[slot & (REDIS_SLOTS - 1)] : NULL;
}

void
redis_router_moved(struct redis_router *r, const char *err, size_t len,
    const struct redis_conn *from)
{
	struct redis_redirect to;
	struct redis_router_node *src = NULL, *dst;

	if (!r->cluster || redis_err_classify(err, len, &to) != REDIS_ERR_MOVED)
		return;
	for (size_t i = 0; i < r->nnodes; i++)
		if (r->nodes[i]->conn == from)
			src = r->nodes[i];
	if (to.host[0] == '\0' && src == NULL)
		return;
	dst = router_node_find(r, to.host[0] ? to.host : src->host, to.port);
	if (dst == NULL) {
		dst = router_node_add(r, to.host[0] ? to.host : src->host,
		    to.port);
		redis_conn_start(dst->conn);
	}
	r->by_slot[to.slot % REDIS_SLOTS] = dst;
	router_refresh(r);
}

bool
redis_router_configure(struct redis_router *r,
    const struct redis_conn_opts *conn)
{
	redis_router_tune(r, conn);
	if (redis_addr_same(&r->addr, conn->addr))
		return false;
	redis_addr_free(&r->addr);
	redis_addr_copy(&r->addr, conn->addr);
	r->cluster = r->addr.cluster != REDIS_CLUSTER_OFF;
	r->have_map = false;
	while (r->nnodes > 0)
		router_node_drop(r, r->nodes[r->nnodes - 1]);
	redis_router_start(r);
	return true;
}

bool
redis_router_ready(const struct redis_router *r)
{
	if (r->nnodes == 0 || (r->cluster && !r->have_map))
		return false;
	for (size_t i = 0; i < r->nnodes; i++)
		if (!redis_conn_ready(r->nodes[i]->conn))
			return false;
	return true;
}

size_t
redis_router_pending(const struct redis_router *r)
{
	size_t n = r->unrouted.n + r->later.n + r->inflight;

	for (size_t i = 0; i < r->nnodes; i++)
		n += r->nodes[i]->wait.n + r->nodes[i]->requeue.n;
	return n;
}

bool
redis_router_cluster(const struct redis_router *r)
{
	return r->cluster;
}

size_t
redis_router_nnodes(const struct redis_router *r)
{
	return r->nnodes;
}

struct redis_router_node *
redis_router_node(const struct redis_router *r, size_t i)
{
	return i < r->nnodes ? r->nodes[i] : NULL;
}

struct redis_conn *
redis_router_conn(const struct redis_router_node *n)
{
	return n->conn;
}

void **
redis_router_data(struct redis_router_node *n)
{
	return &n->data;
}

enum redis_state
redis_router_state(const struct redis_router *r)
{
	for (size_t i = 0; i < r->nnodes; i++)
		if (!redis_conn_ready(r->nodes[i]->conn))
			return redis_conn_state(r->nodes[i]->conn);
	return r->nnodes > 0 && (!r->cluster || r->have_map) ?
	    REDIS_STATE_READY : REDIS_STATE_CONNECTING;
}

const char *
redis_router_where(const struct redis_router_node *n)
{
	return n->where;
}
