/*
 * A target Redis of pginval apply. Commands are pipelined from a FIFO
 * queue with at most max_inflight awaiting replies; each carries its own
 * struct as privdata, so a reply, or the NULL that comes instead when the
 * link drops, finds the command it answers. Dropped commands go back to the front of the
 * queue in their order and are sent again after the reconnect.
 *
 * At each connect the handshake loads both Lua scripts (SCRIPT LOAD), so
 * invalidations can use EVALSHA and readers find pginval_fill cached. A
 * NOSCRIPT reply (SCRIPT FLUSH since) sends that invalidation again as
 * EVAL; any other script error falls back to a plain UNLINK, so the key
 * is deleted even where scripts are forbidden.
 *
 * The links are a redis_router: one server, or every master of a Redis
 * Cluster, where each command goes to the master of its key's slot (the
 * marker shares it) and redirects and lost links are followed until
 * Redis answers. Each node loads the scripts at its connect and has a
 * redis_sweep of its own for resets.
 */
#include "apply/apply_target.h"
#include "apply/apply_key.h"
#include "lib/buf.h"
#include "lib/fifo.h"
#include "lib/log.h"
#include "lib/redis_conn.h"
#include "lib/redis_router.h"
#include "lib/redis_slots.h"
#include "lib/redis_sweep.h"
#include "lib/xalloc.h"

#include <ev.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The reader's side, shipped as daemon/fill.lua (see there). */
static const char fill_lua[] =
#include "apply/fill_lua.h"
;

/*
 * pginval_invalidate: KEYS[1] the key, KEYS[2] its marker; ARGV[1] the
 * change time (us), ARGV[2] the marker's lifetime (ms), ARGV[3] the safety
 * margin (us). The marker's version is the later of the Redis clock now
 * (after the commit, by construction) and the change time, plus the
 * margin; a marker never moves back. Returns UNLINK's reply.
 */
static const char invalidate_lua[] =
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local t = redis.call('TIME')\n"
    "local v = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local ts = tonumber(ARGV[1]) or 0\n"
    "if ts > v then v = ts end\n"
    "v = v + (tonumber(ARGV[3]) or 0)\n"
    "local old = tonumber(redis.call('GET', KEYS[2]) or '')\n"
    "if old and old > v then v = old end\n"
    "redis.call('SET', KEYS[2], string.format('%.0f', v), 'PX', ARGV[2])\n"
    "return redis.call('UNLINK', KEYS[1])\n";

enum tcmd_kind {
	TCMD_INVALIDATE,	/* the script */
	TCMD_UNLINK,		/* its fallback */
	TCMD_SET,
	TCMD_FLUSH,
};

struct tcmd {
	struct fifo_node node;	/* first: the target's lists link through it */
	enum tcmd_kind kind;
	struct buf key, value;
	int64_t ts;		/* change time, for the marker and the lag */
	long ttl_ms;
	bool eval;		/* send the script's text: NOSCRIPT was seen */
	struct redis_router_node *to;	/* FLUSH: one master */
};

struct apply_target {
	struct ev_loop *loop;
	apply_target_cb *cb;
	void *arg;
	struct apply_target_opts o;	/* numbers; strings are below */
	char *name;
	struct redis_router *router;
	struct redis_sweep *sweep;	/* resets, over every node */

	struct fifo queue;		/* waiting to be sent */
	size_t inflight;		/* with the router */
	char inval_sha[41], fill_sha[41];
	struct buf marker;		/* scratch */
	struct apply_stats *stats;
	struct log_limit complaints;	/* about error replies */
	unsigned long history_breaks;	/* REDIS_CONN_EVENT_FORGOT */
};

static void target_pump(struct apply_target *t);

static struct tcmd *
cmd_pop(struct fifo *l)
{
	return (struct tcmd *)fifo_pop(l);
}

static void
cmd_free(struct tcmd *c)
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
		cmd_free(c);
}

/* Error replies are all counted, and logged rate-limited (log.h). */
static void
target_complain(struct apply_target *t, const char *what, const char *err)
{
	t->stats->command_errors++;
	if (log_limit(&t->complaints, ev_now(t->loop), "error replies"))
		log_error("target %s: %s failed: %s", t->name, what, err);
}

static double
target_now_us(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return (double)now.tv_sec * 1e6 + (double)now.tv_nsec / 1e3;
}

static void target_cmd_cb(void *arg, redisReply *reply, void *privdata);

/* Hands c to the router, which keeps it until Redis answers. */
static void
target_send(struct apply_target *t, struct tcmd *c)
{
	const char *argv[8];
	size_t argvlen[8];
	char ts[24], ttl[24], margin[24];
	const char *key = c->key.data ? c->key.data : "";
	int argc = 0;

#define ARG(s, n) (argv[argc] = (s), argvlen[argc++] = (n))
#define ARGS(s) ARG((s), strlen(s))
	switch (c->kind) {
	case TCMD_INVALIDATE:
		buf_reset(&t->marker);
		apply_marker_name(key, c->key.len, &t->marker);
		snprintf(ts, sizeof(ts), "%lld", (long long)c->ts);
		snprintf(ttl, sizeof(ttl), "%ld", (long)(t->o.marker_ttl * 1000));
		snprintf(margin, sizeof(margin), "%ld",
		    (long)(t->o.marker_margin * 1e6));
		ARGS(c->eval || t->inval_sha[0] == '\0' ? "EVAL" : "EVALSHA");
		ARGS(c->eval || t->inval_sha[0] == '\0' ? invalidate_lua :
		    t->inval_sha);
		ARGS("2");
		ARG(key, c->key.len);
		ARG(t->marker.data, t->marker.len);
		ARGS(ts);
		ARGS(ttl);
		ARGS(margin);
		break;
	case TCMD_UNLINK:
		ARGS("UNLINK");
		ARG(key, c->key.len);
		break;
	case TCMD_SET:
		snprintf(ttl, sizeof(ttl), "%ld", c->ttl_ms);
		ARGS("SET");
		ARG(key, c->key.len);
		ARG(c->value.data ? c->value.data : "", c->value.len);
		ARGS("PX");
		ARGS(ttl);
		break;
	case TCMD_FLUSH:
		ARGS("FLUSHDB");
		ARGS("ASYNC");
		break;
	}
#undef ARG
#undef ARGS
	t->inflight++;
	redis_router_command(t->router, c->kind == TCMD_FLUSH ?
	    REDIS_ROUTER_ANY : (int)redis_keyslot(key, c->key.len), c->to,
	    target_cmd_cb, c, argc, argv, argvlen);
}

static void
target_cmd_cb(void *arg, redisReply *reply, void *privdata)
{
	struct apply_target *t = arg;
	struct tcmd *c = privdata;

	if (t->inflight > 0)
		t->inflight--;
	if (reply == NULL) {	/* the target is being freed */
		cmd_free(c);
		return;
	}
	if (reply->type == REDIS_REPLY_ERROR) {
		if (c->kind == TCMD_INVALIDATE && !c->eval &&
		    strncmp(reply->str, "NOSCRIPT", 8) == 0) {
			c->eval = true;
			target_send(t, c);
			return;
		}
		if (c->kind == TCMD_INVALIDATE) {
			target_complain(t, "pginval_invalidate (falling back to "
			    "UNLINK)", reply->str);
			c->kind = TCMD_UNLINK;
			target_send(t, c);
			return;
		}
		target_complain(t, c->kind == TCMD_SET ? "SET" :
		    c->kind == TCMD_FLUSH ? "FLUSHDB" : "UNLINK", reply->str);
	} else if (c->kind == TCMD_INVALIDATE || c->kind == TCMD_UNLINK) {
		t->stats->keys_deleted++;
		if (reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
			t->stats->keys_existed += (unsigned long)reply->integer;
		if (c->ts > 0)
			hist_observe(&t->stats->lag,
			    (target_now_us() - (double)c->ts) / 1e6);
	}
	cmd_free(c);
	target_pump(t);
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
		cmd_free(c);
		t->stats->overflows++;
		t->cb(t->arg, t, TARGET_EVENT_OVERFLOW);
		return;
	}
	fifo_push(&t->queue, &c->node);
	target_pump(t);
}

static void
target_pump(struct apply_target *t)
{
	struct tcmd *c;

	while (t->inflight < (size_t)t->o.max_inflight &&
	    (c = cmd_pop(&t->queue)) != NULL)
		target_send(t, c);
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
		break;
	case REDIS_SWEEP_EVENT_FAILED:
		target_complain(t, "SCAN (keys matching it may remain)", err);
		break;
	}
}

/* -- the connection -------------------------------------------------------- */

/* A SCRIPT LOAD answered: the script's SHA1. */
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

	redis_conn_handshake(conn, what, target_sha_cb, sha, 3, argv, NULL);
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
		target_load(conn, "SCRIPT LOAD", invalidate_lua, t->inval_sha);
		target_load(conn, "SCRIPT LOAD (fill)", fill_lua, t->fill_sha);
		break;
	case ROUTER_NODE_READY:
		if (redis_conn_reconnects(conn) > 0)
			t->stats->target_reconnects++;
		log_info("target %s: connected to %s (fill script %s)", t->name,
		    redis_conn_where(conn), t->fill_sha);
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
	redis_router_tune(t->router, &o->conn);
	target_pump(t);
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
	cmd_list_free(&t->queue);
	buf_free(&t->marker);
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
