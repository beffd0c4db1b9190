/*
 * A target Redis of pginval apply: a FIFO queue of commands (invalidate
 * a key, SET a refreshed value, FLUSHDB), sent in batches with at most
 * max_inflight commands awaiting replies (apply_target_send.c), and the
 * links they go over.
 *
 * At each connect the handshake loads both Lua scripts (SCRIPT LOAD), so
 * invalidations can use EVALSHA and readers find pginval_fill cached; a
 * refusal (an ACL) is not fatal. A NOSCRIPT reply (SCRIPT FLUSH since)
 * sends that batch again as EVAL; any other script error falls back to a
 * plain UNLINK, so the keys are deleted even where scripts are forbidden.
 *
 * The links are a redis_router: one server, or every master of a Redis
 * Cluster, where each command goes to the master of its keys' slot (the
 * markers share it) and redirects and lost links are followed until
 * Redis answers. Each node loads the scripts at its connect and has a
 * redis_sweep of its own for resets.
 */
#include "apply/apply_target_int.h"
#include "lib/log.h"
#include "lib/redis_conn.h"
#include "lib/redis_router.h"
#include "lib/redis_sweep.h"
#include "lib/xalloc.h"

#include <ev.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The reader's side, shipped as daemon/fill.lua (see there). */
static const char fill_lua[] =
#include "apply/fill_lua.h"
;
static struct tcmd *
cmd_pop(struct fifo *l)
{
	return (struct tcmd *)fifo_pop(l);
}

void
target_cmd_free(struct tcmd *c)
{
	buf_free(&c->key);
	buf_free(&c->value);
	free(c);
}

static void
cmd_list_free(struct fifo *l)
{
	struct tcmd *c;

	while ((c = cmd_pop(l)) != NULL)
		target_cmd_free(c);
}

/* Error replies are all counted, and logged rate-limited (log.h). */
void
target_complain(struct apply_target *t, const char *what, const char *err)
{
	t->stats->command_errors++;
	if (log_limit(&t->complaints, ev_now(t->loop), "error replies"))
		log_error("target %s: %s failed: %s", t->name, what, err);
}

static void
target_enqueue(struct apply_target *t, struct tcmd *c)
{
	if (t->queue.n >= (size_t)t->o.max_queue) {
		/* Memory stays bounded however long the target is away: what
		 * is waiting is replaced by a reset of the target. */
		log_warnx("target %s: %zu commands waiting, the limit; dropping "
		    "them for a reset", t->name, t->queue.n);
		cmd_list_free(&t->queue);
		target_cmd_free(c);
		t->stats->overflows++;
		t->cb(t->arg, t, TARGET_EVENT_OVERFLOW);
		return;
	}
	fifo_push(&t->queue, &c->node);
	target_schedule(t);
}

static struct tcmd *
cmd_new(enum tcmd_kind kind, const char *key, size_t len, int64_t ts)
{
	struct tcmd *c = xcalloc(1, sizeof(*c));

	c->kind = kind;
	buf_add(&c->key, key, len);
	c->ts = ts;
	return c;
}

void
apply_target_invalidate(struct apply_target *t, const char *key, size_t len,
    int64_t ts)
{
	target_enqueue(t, cmd_new(TCMD_INVALIDATE, key, len, ts));
}

void
apply_target_set(struct apply_target *t, const char *key, size_t klen,
    const char *value, size_t vlen, long ttl_ms, int64_t ts)
{
	struct tcmd *c = cmd_new(TCMD_SET, key, klen, ts);

	buf_add(&c->value, value, vlen);
	c->ttl_ms = ttl_ms > 0 ? ttl_ms : 1;
	target_enqueue(t, c);
}

/* One FLUSHDB ASYNC per master. */
void
apply_target_flush(struct apply_target *t)
{
	t->mark_done = 0;
	for (size_t i = 0; i < redis_router_nnodes(t->router); i++) {
		struct tcmd *c = cmd_new(TCMD_FLUSH, "", 0, 0);

		c->to = redis_router_node(t->router, i);
		target_enqueue(t, c);
	}
}

/* -- sweeps: SCAN cursor MATCH pattern COUNT 1000, UNLINK what it finds -- */

void
apply_target_sweep(struct apply_target *t, const char *pattern)
{
	t->mark_done = 0;	/* nothing is sure until the sweep is over */
	redis_sweep_add(t->sweep, pattern, strlen(pattern));
}

static void
target_sweep_cb(void *arg, enum redis_sweep_event ev, const char *pattern,
    const char *err, unsigned long n)
{
	struct apply_target *t = arg;

	switch (ev) {
	case REDIS_SWEEP_EVENT_UNLINKED:
		t->stats->swept += n;
		break;
	case REDIS_SWEEP_EVENT_UNLINK_FAILED:
		target_complain(t, "UNLINK (sweep)", err);
		break;
	case REDIS_SWEEP_EVENT_STARTED:
		t->stats->sweeps++;
		break;
	case REDIS_SWEEP_EVENT_MERGED:
		t->stats->sweeps_merged++;
		break;
	case REDIS_SWEEP_EVENT_DONE:
		log_debug("target %s: swept keys matching \"%s\"", t->name,
		    pattern);
		target_settle(t);
		break;
	case REDIS_SWEEP_EVENT_FAILED:
		target_complain(t, "SCAN (keys matching it may remain)", err);
		target_settle(t);
		break;
	}
}

/* -- the connection -------------------------------------------------------- */

/* A SCRIPT LOAD answered: the script's SHA1. A refusal (an ACL) leaves
 * it unknown: invalidations then send the text, and fall back to UNLINK
 * if that is refused too. */
static void
target_sha_cb(void *arg, redisReply *reply, void *privdata)
{
	char *sha = privdata;

	if (reply->type == REDIS_REPLY_STRING)
		snprintf(sha, 41, "%.*s", (int)reply->len, reply->str);
}

static void
target_load(struct redis_conn *conn, const char *what, const char *script,
    char *sha)
{
	const char *argv[] = { "SCRIPT", "LOAD", script };

	redis_conn_handshake(conn, what, true, target_sha_cb, sha, 3, argv,
	    NULL);
}

static void
target_node_cb(void *arg, enum redis_router_event ev,
    struct redis_router_node *n)
{
	struct apply_target *t = arg;
	struct redis_conn *conn = n ? redis_router_conn(n) : NULL;

	switch (ev) {
	case ROUTER_MAP:
		break;
	case ROUTER_NODE_NEW:
	case ROUTER_NODE_GONE:
		redis_sweep_nodes_changed(t->sweep);
		break;
	case ROUTER_NODE_HANDSHAKE:
		/* The same text has the same SHA1 on every node. */
		t->scripts_refused = false;
		target_load(conn, "SCRIPT LOAD", target_invalidate_lua, t->inval_sha);
		target_load(conn, "SCRIPT LOAD (fill)", fill_lua, t->fill_sha);
		break;
	case ROUTER_NODE_READY:
		if (redis_conn_reconnects(conn) > 0)
			t->stats->target_reconnects++;
		log_info("target %s: connected to %s (fill script %s)", t->name,
		    redis_conn_where(conn), t->fill_sha[0] ? t->fill_sha :
		    "not loaded: SCRIPT LOAD refused");
		t->cb(t->arg, t, TARGET_EVENT_READY);
		redis_sweep_resume(t->sweep);
		break;
	case ROUTER_NODE_CLOSED:
		redis_sweep_reset(t->sweep, conn);
		break;
	case ROUTER_NODE_LOST:
		t->cb(t->arg, t, TARGET_EVENT_LOST);
		break;
	case ROUTER_NODE_FORGOT:
		t->history_breaks++;
		t->forgot_mark = redis_conn_forgot_mark(conn);
		t->cb(t->arg, t, TARGET_EVENT_FORGOT);
		break;
	}
}

struct apply_target *
apply_target_new(struct ev_loop *loop, const struct apply_target_opts *opts,
    apply_target_cb *cb, void *arg)
{
	struct apply_target *t = xcalloc(1, sizeof(*t));
	struct redis_conn_opts co = opts->conn;
	struct buf prefix = { 0 };

	t->loop = loop;
	t->cb = cb;
	t->arg = arg;
	t->o = *opts;		/* for its limits and markers */
	memset(&t->o.conn, 0, sizeof(t->o.conn));
	t->o.name = NULL;
	t->o.stats = NULL;
	t->stats = opts->stats;
	t->name = xstrdup(opts->name);
	buf_adds(&prefix, "target ");
	buf_adds(&prefix, opts->name);
	co.name = prefix.data;
	co.backlog = &t->queue.n;
	co.backlog_unit = "commands";
	co.writes = true;
	co.mark = &t->mark_done;
	ev_prepare_init(&t->pump_w, target_pump_cb);
	t->pump_w.data = t;
	t->router = redis_router_new(loop, &co, target_node_cb, t);
	t->sweep = redis_sweep_new(loop, t->router, target_sweep_cb, t);
	buf_free(&prefix);
	return t;
}

void
apply_target_start(struct apply_target *t)
{
	redis_router_start(t->router);
}

void
apply_target_tune(struct apply_target *t, const struct apply_target_opts *o)
{
	t->o.max_inflight = o->max_inflight;
	t->o.max_queue = o->max_queue;
	t->o.marker_ttl = o->marker_ttl;
	t->o.marker_margin = o->marker_margin;
	t->o.markers = o->markers;
	redis_router_tune(t->router, &o->conn);
	target_schedule(t);
}

void
apply_target_free(struct apply_target *t)
{
	if (t == NULL)
		return;
	/* First: commands in the router come back NULL and are freed. */
	redis_router_free(t->router);
	t->router = NULL;
	redis_sweep_free(t->sweep);
	ev_prepare_stop(t->loop, &t->pump_w);
	cmd_list_free(&t->queue);
	free(t->argv);
	free(t->argvlen);
	free(t->argoff);
	buf_free(&t->text);
	free(t->name);
	free(t);
}

bool
apply_target_busy(const struct apply_target *t)
{
	return t->queue.n > 0 || t->inflight > 0 || redis_sweep_busy(t->sweep);
}

size_t
apply_target_queued(const struct apply_target *t)
{
	return t->queue.n;
}

size_t
apply_target_inflight(const struct apply_target *t)
{
	return t->inflight;
}

enum redis_state
apply_target_state(const struct apply_target *t)
{
	return redis_router_state(t->router);
}

const char *
apply_target_name(const struct apply_target *t)
{
	return t->name;
}

const char *
apply_target_fill_sha(const struct apply_target *t)
{
	return t->fill_sha;
}

unsigned long
apply_target_history_breaks(const struct apply_target *t)
{
	return t->history_breaks;
}

/* -- marks ---------------------------------------------------------------- */

void
target_settle(struct apply_target *t)
{
	if (t->repairing || apply_target_busy(t) || t->mark_done == t->mark)
		return;
	t->mark_done = t->mark;
	redis_router_mark(t->router);
}

void
apply_target_mark(struct apply_target *t, uint64_t mark)
{
	target_settle(t);
	t->mark = mark;
}

uint64_t
apply_target_forgot_mark(const struct apply_target *t)
{
	return t->forgot_mark;
}

void
apply_target_repairing(struct apply_target *t, bool on, uint64_t from)
{
	/* Off: mark_done moves at the next settle, after whatever the owner
	 * does now (a reset, when the repair failed) has begun. */
	t->repairing = on;
	if (on)
		t->mark_done = from;
}
