/*
 * action = delete: the Redis sink removes the keys of each message before
 * it announces it, so that a subscriber that refills on the message
 * cannot race the removal, and sweeps the patterns of truncates and
 * resets.
 *
 * On one server the UNLINKs go on the channel's link, pipelined before
 * the message's XADD and PUBLISH, which Redis then answers in order. In a
 * cluster the keys live on every master: one UNLINK per slot goes
 * through the router, and the message waits first in the queue until
 * every one of them is answered.
 */
#include "run/sink_int.h"
#include "lib/redis_conn.h"
#include "lib/redis_router.h"
#include "lib/redis_sweep.h"
#include "lib/xalloc.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#define SINK_UNLINK_KEYS 512	/* keys per UNLINK */

static void
sink_unlink_result(struct redis_sink *s, const redisReply *reply)
{
	if (reply->type == REDIS_REPLY_INTEGER)
		s->stats->unlinked += (unsigned long)reply->integer;
	else if (redis_sink_unreadable(reply))
		redis_sink_refused(s, "UNLINK", reply->str);
	else if (reply->type == REDIS_REPLY_ERROR)
		log_error("redis: UNLINK failed: %s", reply->str);
}

static void
sink_unlink_cb(void *arg, redisReply *reply, void *privdata)
{
	if (reply != NULL)
		sink_unlink_result(privdata, reply);
}

/* One server: on the channel's link, before the message. */
static int
sink_unlink_here(struct redis_sink *s, struct redis_conn *conn,
    const struct keys *k)
{
	const char **argv = xmalloc((SINK_UNLINK_KEYS + 1) * sizeof(*argv));
	size_t *argvlen = xmalloc((SINK_UNLINK_KEYS + 1) * sizeof(*argvlen));
	int rc = 0;

	argv[0] = "UNLINK";
	argvlen[0] = 6;
	for (size_t i = 0; i < k->n && rc == 0; i += SINK_UNLINK_KEYS) {
		size_t n = k->n - i < SINK_UNLINK_KEYS ? k->n - i :
		    SINK_UNLINK_KEYS;

		for (size_t j = 0; j < n; j++)
			argv[j + 1] = keys_get(k, i + j, &argvlen[j + 1]);
		rc = redis_conn_command(conn, sink_unlink_cb, s, (int)n + 1,
		    argv, argvlen);
	}
	free(argv);
	free(argvlen);
	return rc;
}

/* A cluster: the UNLINKs of a message answered, one by one. privdata is
 * the message, which waits first in the queue meanwhile. */
static void
sink_routed_cb(void *arg, redisReply *reply, void *privdata)
{
	struct redis_sink *s = arg;
	struct sink_msg *m = privdata;

	if (reply == NULL)
		return;	/* the sink is being freed */
	sink_unlink_result(s, reply);
	if (--m->unlinking == 0) {
		m->unlinked = true;
		redis_sink_kick(s);
	}
}

static void
sink_unlink_routed(struct redis_sink *s, struct sink_msg *m)
{
	size_t n = m->keys.n;
	const char **k = xmalloc(n * sizeof(*k));
	size_t *klen = xmalloc(n * sizeof(*klen));

	for (size_t i = 0; i < n; i++)
		k[i] = keys_get(&m->keys, i, &klen[i]);
	m->unlinking = (unsigned)redis_router_unlink(s->router, k, klen, n,
	    SINK_UNLINK_KEYS, sink_routed_cb, m);
	free(k);
	free(klen);
}

int
sink_delete(struct redis_sink *s, struct sink_msg *m, struct redis_conn *conn)
{
	if (m->op != NULL && m->keys.n > 0) {
		if (!redis_router_cluster(s->router)) {
			if (sink_unlink_here(s, conn, &m->keys) == -1)
				return -1;
		} else if (!m->unlinked) {
			if (m->unlinking == 0)
				sink_unlink_routed(s, m);
			return 1;
		}
	}
	for (size_t i = 0; i < m->patterns.n; i++) {
		size_t len;
		const char *p = keys_get(&m->patterns, i, &len);

		redis_sweep_add(s->sweep, p, len);
	}
	return 0;
}

void
sink_delete_sweep_cb(void *arg, enum redis_sweep_event ev,
    const char *pattern, const char *err, unsigned long n)
{
	struct redis_sink *s = arg;

	switch (ev) {
	case REDIS_SWEEP_EVENT_UNLINKED:
		s->stats->unlinked += n;
		break;
	case REDIS_SWEEP_EVENT_UNLINK_FAILED:
		log_error("redis: UNLINK failed: %s", err);
		break;
	case REDIS_SWEEP_EVENT_STARTED:
	case REDIS_SWEEP_EVENT_MERGED:
		break;
	case REDIS_SWEEP_EVENT_DONE:
		log_debug("redis: removed keys matching \"%s\"", pattern);
		break;
	case REDIS_SWEEP_EVENT_FAILED:
		log_error("redis: SCAN for \"%s\" failed: %s; keys matching it "
		    "may remain", pattern, err);
		break;
	}
}
