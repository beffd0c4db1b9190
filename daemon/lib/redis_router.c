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
#include "lib/redis_router_int.h"
#include "lib/fifo.h"
#include "lib/log.h"
#include "lib/redis_slots.h"
#include "lib/xalloc.h"

#include <ev.h>
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

struct redis_router_node *
router_node_find(struct redis_router *r, const char *host, int port)
{
	for (size_t i = 0; i < r->nnodes; i++)
		if (r->nodes[i]->port == port &&
		    strcmp(r->nodes[i]->host, host) == 0)
			return r->nodes[i];
	return NULL;
}

struct redis_router_node *
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
		/* What waits for this node, for its log lines. */
		co.backlog = &n->wait.n;
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
void
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
void
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

size_t
redis_router_unlink(struct redis_router *r, const char *const *keys,
    const size_t *lens, size_t n, size_t max, redis_conn_reply_cb *fn,
    void *privdata)
{
	const char **argv = xmalloc((max + 1) * sizeof(*argv));
	size_t *argvlen = xmalloc((max + 1) * sizeof(*argvlen));
	size_t *order = xmalloc((n + 1) * sizeof(*order));
	uint16_t *slot = xmalloc((n + 1) * sizeof(*slot));
	size_t sent = 0, run;

	if (r->cluster) {
		redis_slots_group(keys, lens, n, slot, order);
	} else {
		for (size_t i = 0; i < n; i++)
			order[i] = i, slot[i] = 0;
	}
	argv[0] = "UNLINK";
	argvlen[0] = 6;
	for (size_t i = 0; i < n; i += run) {
		run = r->cluster ? redis_slots_run(slot, order, n, i) : n - i;
		if (run > max)
			run = max;
		for (size_t j = 0; j < run; j++) {
			argv[j + 1] = keys[order[i + j]];
			argvlen[j + 1] = lens[order[i + j]];
		}
		redis_router_command(r, r->cluster ? slot[order[i]] :
		    REDIS_ROUTER_ANY, NULL, fn, privdata, (int)run + 1, argv,
		    argvlen);
		sent++;
	}
	free(argv);
	free(argvlen);
	free(order);
	free(slot);
	return sent;
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
		/* Only to a master of the map: a node it does not name
		 * (a new master importing its first slot) is known once
		 * the map is refreshed; meanwhile the command waits. */
		dst = ++c->hops > REDIS_ROUTER_HOPS ? NULL : router_node_find(r,
		    to.host[0] ? to.host : n->host, to.port);
		if (dst == NULL) {
			if (log_limit(&r->complaints, ev_now(r->loop),
			    "retries"))
				log_warnx("%s: %s answered %s (%u redirects in a "
				    "row, or a node not in the map); asking for "
				    "the map and waiting", r->name, n->where,
				    reply->str, c->hops);
			c->hops = 0;
			router_refresh(r);
			router_later(r, c);
			return;
		}
		if (kind == REDIS_ERR_MOVED) {
			r->by_slot[to.slot % REDIS_SLOTS] = dst;
			router_refresh(r);
		} else {
			c->ask = dst;
		}
		router_route(r, c);
		return;
	}
	/* READONLY never gets here: the link of a master that became a
	 * replica closes itself (redis_conn) and the command comes back
	 * NULL, to be sent again. */
	if (kind == REDIS_ERR_TRYAGAIN || kind == REDIS_ERR_CLUSTERDOWN ||
	    kind == REDIS_ERR_LOADING || kind == REDIS_ERR_MASTERDOWN) {
		if (log_limit(&r->complaints, ev_now(r->loop), "retries"))
			log_warnx("%s: %s answered %s; trying again", r->name,
			    n->where, reply->str);
		if (kind != REDIS_ERR_TRYAGAIN)
			router_refresh(r);
		router_later(r, c);
		return;
	}
final:
	c->hops = 0;
	c->fn(r->arg, reply, c->privdata);
	free(c);
	router_pump(n);
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

void
redis_router_mark(struct redis_router *r)
{
	for (size_t i = 0; i < r->nnodes; i++)
		redis_conn_mark(r->nodes[i]->conn);
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
