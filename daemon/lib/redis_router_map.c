/*
 * The router's slot map (redis_router.h): CLUSTER SLOTS, asked of a ready
 * node at the start, after MOVED, while a node is away and periodically;
 * a new map adds the masters it names and drops the nodes that own no
 * slot any more, whose commands are routed again. A replica promoted to
 * master takes over its shard's write history (redis_history.h).
 */
#include "lib/redis_router_int.h"
#include "lib/redis_conn.h"
#include "lib/redis_history.h"
#include "lib/xalloc.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Remembers the replicas the map lists with n (none: forgets them). */
void
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
	if (redis_slots_parse(&m, reply, n->host, err, sizeof(err)) == -1 ||
	    m.nmasters > REDIS_ROUTER_NODES_MAX) {
		if (m.nmasters > REDIS_ROUTER_NODES_MAX)
			snprintf(err, sizeof(err), "%zu masters, more than the "
			    "%d pginval follows", m.nmasters,
			    REDIS_ROUTER_NODES_MAX);
		redis_slots_free(&m);
		log_error("%s: CLUSTER SLOTS from %s: %s; keeping the map I "
		    "have", r->name, n->where, err);
		return;
	}
	for (size_t i = 0; i < r->nnodes; i++)
		r->nodes[i]->first_slot = -1;
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
void
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

void
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
	if (dst != NULL)
		r->by_slot[to.slot % REDIS_SLOTS] = dst;
	router_refresh(r);
}

