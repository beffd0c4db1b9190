/*
 * The Redis sink's links (redis_sink.h): the router's events (the
 * channel's master ready or lost, nodes that come and go under the
 * sweeps, a server that may have forgotten writes), and the answers of a
 * cluster that send a message elsewhere.
 */
#include "run/sink_int.h"
#include "lib/redis_conn.h"
#include "lib/redis_router.h"
#include "lib/redis_slots.h"
#include "lib/redis_sweep.h"

#include <hiredis/hiredis.h>
#include <string.h>

/*
 * A cluster's answers that say "not here" or "not now" (MOVED, ASK,
 * TRYAGAIN, CLUSTERDOWN, LOADING...): not the message's fault. True for
 * those; the map is corrected and the message is sent again, to the
 * owner, after a short wait. (READONLY closes the link in redis_conn:
 * the message comes back NULL.)
 */
bool
sink_redirected(struct redis_sink *s, struct redis_router_node *n,
    const redisReply *reply)
{
	enum redis_err_kind kind = redis_err_classify(reply->str, reply->len,
	    NULL);

	if (kind == REDIS_ERR_OTHER || kind == REDIS_ERR_NOSCRIPT)
		return false;
	if (kind == REDIS_ERR_MOVED)
		redis_router_moved(s->router, reply->str, reply->len,
		    redis_router_conn(n));
	if (log_limit(&s->refusal_lines, ev_now(s->loop), "redirects"))
		log_info("redis: %s answered %s; sending again",
		    redis_router_where(n), reply->str);
	ev_timer_stop(s->loop, &s->hold);
	ev_timer_set(&s->hold, 0.05, 0);	/* never a busy loop */
	ev_timer_start(s->loop, &s->hold);
	return true;
}

/* The channel's master is ready: told once per link. */
static void
redis_sink_channel_ready(struct redis_sink *s)
{
	struct redis_router_node *n = redis_router_slot_node(s->router,
	    s->slot);
	struct redis_conn *conn = n ? redis_router_conn(n) : NULL;

	if (conn == NULL || !redis_conn_ready(conn) || n == s->ready_on)
		return;
	s->ready_on = n;
	if (redis_conn_reconnects(conn) > 0)
		s->stats->redis_reconnects++;
	log_info("redis: connected to %s, publishing on \"%s\"%s%s%s",
	    redis_conn_where(conn), s->channel,
	    s->stream ? " and appending to stream \"" : "",
	    s->stream ? s->stream : "", s->stream ? "\"" : "");
	s->cb(s->arg, REDIS_EVENT_READY, NULL, NULL);
}

void
sink_node_cb(void *arg, enum redis_router_event ev,
    struct redis_router_node *n)
{
	struct redis_sink *s = arg;
	struct redis_conn *conn = n ? redis_router_conn(n) : NULL;
	bool channel = n != NULL &&
	    n == redis_router_slot_node(s->router, s->slot);

	switch (ev) {
	case ROUTER_MAP:
		redis_sink_channel_ready(s);
		redis_sink_kick(s);
		break;
	case ROUTER_NODE_NEW:
	case ROUTER_NODE_GONE:
		if (s->sweep != NULL)
			redis_sweep_nodes_changed(s->sweep);
		if (n == s->ready_on)
			s->ready_on = NULL;
		if (n == s->sent_on) {
			/* Its replies came back NULL as it went. */
			fifo_prepend(&s->requeue, &s->inflight);
			s->sent_on = NULL;
			redis_sink_kick(s);
		}
		break;
	case ROUTER_NODE_HANDSHAKE:
		break;
	case ROUTER_NODE_READY:
		redis_sink_channel_ready(s);
		if (s->sweep != NULL)
			redis_sweep_resume(s->sweep);
		redis_sink_kick(s);
		break;
	case ROUTER_NODE_CLOSED:
		/* Whatever was in flight goes back, in order, before the
		 * queue (redis_sink_pump()). */
		if (n == s->sent_on)
			fifo_prepend(&s->requeue, &s->inflight);
		if (s->sweep != NULL)
			redis_sweep_reset(s->sweep, conn);
		redis_sink_kick(s);
		break;
	case ROUTER_NODE_LOST:
		if (n == s->ready_on)
			s->ready_on = NULL;
		if (channel)
			s->cb(s->arg, REDIS_EVENT_LOST, NULL, NULL);
		break;
	case ROUTER_NODE_FORGOT:	/* any node: deleted keys may be back */
		s->stats->history_breaks++;
		s->cb(s->arg, REDIS_EVENT_FORGOT, NULL,
		    redis_conn_forgot_reason(conn));
		break;
	}
}

