/*
 * SCAN + UNLINK sweeps. Each sweep has at most one SCAN awaiting its
 * reply; the UNLINK of a batch is sent before the next SCAN, so that
 * the keys are removed in the order the server handed them out. An
 * UNLINK's reply may come after its sweep has ended, so it carries the
 * sweeps as privdata, not the sweep.
 *
 * A sweep is one pattern: a pass, then a rest (a timer) while a request
 * for it would come too soon after the pass; a request during either
 * marks it "again", and the next pass starts when the rest ends. A sweep
 * whose rest ends with nothing asked is gone.
 *
 * A pass scans the router's nodes one after the other (every master of a
 * cluster). SCAN goes to the node's own link; the UNLINKs go through the
 * router, one per slot in a cluster (CROSSSLOT otherwise), which follows
 * a key that a migration moved. A node that joins or leaves during a pass
 * makes it pass again.
 */
#include "lib/redis_sweep.h"
#include "lib/buf.h"
#include "lib/redis_conn.h"
#include "lib/redis_router.h"
#include "lib/xalloc.h"

#include <ev.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCAN_COUNT "1000"

struct sweep {
	struct sweep *next;
	struct redis_sweep *sw;
	char *pattern;
	size_t len;
	char cursor[24];
	size_t node;		/* the router's node being scanned */
	bool running;		/* a SCAN is awaiting its reply */
	bool again;		/* asked for since the pass started */
	bool resting;		/* between passes: rest is armed */
	ev_tstamp started;	/* when the pass started */
	ev_timer rest;
};

struct redis_sweep {
	struct ev_loop *loop;
	struct redis_router *router;
	redis_sweep_cb *cb;
	void *arg;
	struct sweep *head;
};

static void redis_sweep_scan(struct sweep *s);

static void
redis_sweep_unlink_cb(void *arg, redisReply *reply, void *privdata)
{
	struct redis_sweep *sw = privdata;

	if (reply == NULL)
		return;
	if (reply->type == REDIS_REPLY_INTEGER)
		sw->cb(sw->arg, REDIS_SWEEP_EVENT_UNLINKED, NULL, NULL,
		    (unsigned long)reply->integer);
	else if (reply->type == REDIS_REPLY_ERROR)
		sw->cb(sw->arg, REDIS_SWEEP_EVENT_UNLINK_FAILED, NULL,
		    reply->str, 0);
}

/* UNLINKs the keys of one SCAN reply: in one command, or in one per slot
 * in a cluster. */
static void
redis_sweep_unlink(struct redis_sweep *sw, const redisReply *keys)
{
	size_t n = keys->elements, nk = 0;
	const char **k = xmalloc((n + 1) * sizeof(*k));
	size_t *klen = xmalloc((n + 1) * sizeof(*klen));

	for (size_t i = 0; i < n; i++)
		if (keys->element[i]->type == REDIS_REPLY_STRING) {
			k[nk] = keys->element[i]->str;
			klen[nk++] = keys->element[i]->len;
		}
	(void)redis_router_unlink(sw->router, k, klen, nk, nk,
	    redis_sweep_unlink_cb, sw);
	free(k);
	free(klen);
}

static void
redis_sweep_done(struct sweep *s)
{
	for (struct sweep **pp = &s->sw->head; *pp != NULL; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	ev_timer_stop(s->sw->loop, &s->rest);
	free(s->pattern);
	free(s);
}

/* A pass from the first cursor. */
static void
redis_sweep_pass(struct sweep *s)
{
	s->again = false;
	s->resting = false;
	s->started = ev_now(s->sw->loop);
	strcpy(s->cursor, "0");
	s->node = 0;
	s->sw->cb(s->sw->arg, REDIS_SWEEP_EVENT_STARTED, s->pattern, NULL, 0);
	redis_sweep_scan(s);
}

/* The pass reached the end of the keyspace: rest, as long as it took and
 * at least until REDIS_SWEEP_REST after its start. */
static void
redis_sweep_passed(struct sweep *s)
{
	ev_tstamp now = ev_now(s->sw->loop);
	ev_tstamp until = s->started + REDIS_SWEEP_REST;

	s->sw->cb(s->sw->arg, REDIS_SWEEP_EVENT_DONE, s->pattern, NULL, 0);
	if (now + (now - s->started) > until)
		until = now + (now - s->started);
	s->resting = true;
	ev_timer_set(&s->rest, until - now, 0);
	ev_timer_start(s->sw->loop, &s->rest);
}

static void
redis_sweep_rest_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sweep *s = w->data;

	if (s->again)
		redis_sweep_pass(s);
	else
		redis_sweep_done(s);
}

static void
redis_sweep_scan_cb(void *arg, redisReply *reply, void *privdata)
{
	struct sweep *s = privdata;
	struct redis_sweep *sw = s->sw;

	s->running = false;
	if (reply == NULL)
		return;	/* started again after the reconnect */
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
	    reply->element[0]->type != REDIS_REPLY_STRING ||
	    reply->element[1]->type != REDIS_REPLY_ARRAY) {
		sw->cb(sw->arg, REDIS_SWEEP_EVENT_FAILED, s->pattern,
		    reply->type == REDIS_REPLY_ERROR ? reply->str :
		    "unexpected reply", 0);
		redis_sweep_done(s);
		return;
	}
	redis_sweep_unlink(sw, reply->element[1]);
	snprintf(s->cursor, sizeof(s->cursor), "%s", reply->element[0]->str);
	if (strcmp(s->cursor, "0") == 0 &&
	    ++s->node >= redis_router_nnodes(sw->router))
		redis_sweep_passed(s);
	else
		redis_sweep_scan(s);
}

static void
redis_sweep_scan(struct sweep *s)
{
	const char *argv[] = { "SCAN", s->cursor, "MATCH", s->pattern,
	    "COUNT", SCAN_COUNT };
	size_t argvlen[] = { 4, strlen(s->cursor), 5, s->len, 5,
	    strlen(SCAN_COUNT) };

	struct redis_router_node *n = redis_router_node(s->sw->router,
	    s->node);

	if (n == NULL || !redis_conn_ready(redis_router_conn(n)))
		return;
	s->running = redis_conn_command(redis_router_conn(n),
	    redis_sweep_scan_cb, s, 6, argv, argvlen) == 0;
}

struct redis_sweep *
redis_sweep_new(struct ev_loop *loop, struct redis_router *router,
    redis_sweep_cb *cb, void *arg)
{
	struct redis_sweep *sw = xcalloc(1, sizeof(*sw));

	sw->loop = loop;
	sw->router = router;
	sw->cb = cb;
	sw->arg = arg;
	return sw;
}

void
redis_sweep_free(struct redis_sweep *sw)
{
	struct sweep *s;

	if (sw == NULL)
		return;
	while ((s = sw->head) != NULL)
		redis_sweep_done(s);
	free(sw);
}

void
redis_sweep_add(struct redis_sweep *sw, const char *pattern, size_t len)
{
	struct sweep *s;

	for (s = sw->head; s != NULL; s = s->next)
		if (s->len == len && memcmp(s->pattern, pattern, len) == 0) {
			/* Keys it has passed may have been cached again
			 * since: one more pass, after this one. */
			s->again = true;
			sw->cb(sw->arg, REDIS_SWEEP_EVENT_MERGED, s->pattern, NULL,
			    0);
			return;
		}
	s = xcalloc(1, sizeof(*s));
	s->sw = sw;
	s->pattern = xstrndup(pattern, len);
	s->len = len;
	ev_timer_init(&s->rest, redis_sweep_rest_cb, 0, 0);
	s->rest.data = s;
	s->next = sw->head;
	sw->head = s;
	redis_sweep_pass(s);
}

void
redis_sweep_resume(struct redis_sweep *sw)
{
	for (struct sweep *s = sw->head; s != NULL; s = s->next)
		if (!s->running && !s->resting)
			redis_sweep_scan(s);
}

void
redis_sweep_reset(struct redis_sweep *sw, const struct redis_conn *conn)
{
	for (struct sweep *s = sw->head; s != NULL; s = s->next) {
		struct redis_router_node *n = redis_router_node(sw->router,
		    s->node);

		if (n != NULL && redis_router_conn(n) != conn)
			continue;
		s->running = false;
		if (!s->resting)
			strcpy(s->cursor, "0");
	}
}

void
redis_sweep_nodes_changed(struct redis_sweep *sw)
{
	for (struct sweep *s = sw->head; s != NULL; s = s->next) {
		if (s->resting)
			continue;
		s->again = true;
		if (!s->running) {
			/* Its node may have gone: go on from the same
			 * index, the next pass covers what shifted. */
			strcpy(s->cursor, "0");
			if (s->node >= redis_router_nnodes(sw->router))
				redis_sweep_passed(s);
			else
				redis_sweep_scan(s);
		}
	}
}

bool
redis_sweep_busy(const struct redis_sweep *sw)
{
	for (const struct sweep *s = sw->head; s != NULL; s = s->next)
		if (!s->resting || s->again)
			return true;
	return false;
}
