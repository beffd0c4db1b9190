/*
 * The channel subscription of pginval apply, on a redis_psub link: it
 * SUBSCRIBEs on one Redis (or any node of a cluster in broadcast mode)
 * and SSUBSCRIBEs at the node that owns the channel's slot in a sharded
 * cluster, following the slot when it moves. A subscribed link is silent
 * when idle, so TCP keepalive (with TCP_USER_TIMEOUT) is what finds a
 * peer that vanished, and the connect timeout lasts until the
 * confirmation. Each subscription after the first is a gap for apply.
 * With sentinels, each connect goes where they say the master is, and a
 * switch of that master moves the subscription there.
 */
#include "apply/apply_sub.h"
#include "lib/redis_conn.h"
#include "lib/redis_psub.h"
#include "lib/redis_sentinel.h"
#include "lib/xalloc.h"

#include <stdlib.h>

struct apply_sub {
	apply_sub_cb *cb;
	void *arg;
	struct redis_psub *link;
	struct redis_sentinel *sentinel;	/* NULL without sentinels */
};

static int
sub_locate(void *arg, char *host, size_t hostlen, int *port)
{
	struct apply_sub *s = arg;

	return redis_sentinel_locate(s->sentinel, host, hostlen, port);
}

static void
sub_switched(void *arg, const char *host, int port)
{
	struct apply_sub *s = arg;

	redis_psub_reconnect(s->link, "the master switched");
}

static void
sub_link_cb(void *arg, enum redis_psub_event ev, const char *payload,
    size_t len)
{
	struct apply_sub *s = arg;

	switch (ev) {
	case REDIS_PSUB_EVENT_SUBSCRIBED:
		s->cb(s->arg, SUB_EVENT_SUBSCRIBED, NULL, 0);
		break;
	case REDIS_PSUB_EVENT_MESSAGE:
		s->cb(s->arg, SUB_EVENT_MESSAGE, payload, len);
		break;
	case REDIS_PSUB_EVENT_LOST:
		s->cb(s->arg, SUB_EVENT_LOST, NULL, 0);
		break;
	}
}

struct apply_sub *
apply_sub_new(struct ev_loop *loop, const struct redis_conn_opts *conn,
    const char *channel, apply_sub_cb *cb, void *arg)
{
	struct apply_sub *s = xcalloc(1, sizeof(*s));
	struct redis_psub_opts po = {
		.name = "channel",
		.addr = conn->addr,
		.channel = channel,
		.client_name = conn->client_name,
		.connect_timeout = conn->connect_timeout,
		.keepalive = conn->keepalive,
		.reconnect_min = conn->reconnect_min,
		.reconnect_max = conn->reconnect_max,
	};

	s->cb = cb;
	s->arg = arg;
	if (conn->addr->nsentinels > 0) {
		struct redis_sentinel_opts so = {
			.name = "channel", .addr = conn->addr,
			.timeout = conn->connect_timeout,
			.reconnect_min = conn->reconnect_min,
			.reconnect_max = conn->reconnect_max,
		};

		s->sentinel = redis_sentinel_new(loop, &so, s);
		po.locate = sub_locate;
		po.locate_arg = s;
	}
	s->link = redis_psub_new(loop, &po, sub_link_cb, s);
	return s;
}

void
apply_sub_start(struct apply_sub *s)
{
	if (s->sentinel != NULL)
		redis_sentinel_follow(s->sentinel, sub_switched);
	redis_psub_start(s->link);
}

void
apply_sub_free(struct apply_sub *s)
{
	if (s == NULL)
		return;
	redis_psub_free(s->link);
	redis_sentinel_free(s->sentinel);
	free(s);
}

bool
apply_sub_subscribed(const struct apply_sub *s)
{
	return redis_psub_state(s->link) == REDIS_PSUB_SUBSCRIBED;
}

const char *
apply_sub_state_name(const struct apply_sub *s)
{
	return redis_psub_state_name(redis_psub_state(s->link));
}

unsigned long
apply_sub_reconnects(const struct apply_sub *s)
{
	return redis_psub_resubscriptions(s->link);
}
