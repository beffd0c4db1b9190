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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The reader's side, shipped as daemon/fill.lua (see there). */
static const char fill_lua[] =
#include "apply/fill_lua.h"
;

/*
 * pginval_invalidate, for n keys of one slot: KEYS[1..n] the keys,
 * KEYS[n+1..2n] their markers; ARGV[1] the markers' lifetime (ms),
 * ARGV[2] the safety margin (us), ARGV[2+i] key i's change time (us), or
 * the last ARGV that of every key after it (one message's keys share
 * theirs). Each marker's version is the later of the Redis clock now
 * (after the commit, by construction) and the change time, plus the
 * margin; a marker never moves back. One TIME, MGET and UNLINK per call;
 * per key, one SET, the one command that cannot be shared (each marker
 * has its own expiry). Returns UNLINK's reply.
 */
static const char invalidate_lua[] =
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local n, last, call = #KEYS / 2, #ARGV, redis.call\n"
    "local t = call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local ttl, margin = ARGV[1], tonumber(ARGV[2]) or 0\n"
    "local old = call('MGET', unpack(KEYS, n + 1, 2 * n))\n"
    "local ts, v, text\n"
    "for i = 1, n do\n"
    "  local a = ARGV[i + 2 <= last and i + 2 or last]\n"
    "  if a ~= ts then\n"
    "    ts, v = a, tonumber(a) or 0\n"
    "    if now > v then v = now end\n"
    "    v = v + margin\n"
    "    text = string.format('%.0f', v)\n"
    "  end\n"
    "  local o = tonumber(old[i] or '')\n"
    "  if o and o > v then\n"
    "    call('SET', KEYS[n + i], string.format('%.0f', o), 'PX', ttl)\n"
    "  else\n"
    "    call('SET', KEYS[n + i], text, 'PX', ttl)\n"
    "  end\n"
    "end\n"
    "return call('UNLINK', unpack(KEYS, 1, n))\n";

/* Keys per script call (or per UNLINK): one call holds Redis for about
 * a microsecond per key. */
#define TARGET_BATCH 256

enum tcmd_kind {
	TCMD_INVALIDATE,
	TCMD_SET,
	TCMD_FLUSH,
};

struct tcmd {
	struct fifo_node node;	/* first: the target's lists link through it */
	enum tcmd_kind kind;
	struct buf key, value;
	int64_t ts;		/* change time, for the marker and the lag */
	long ttl_ms;
	struct redis_router_node *to;	/* FLUSH: one master */
};

/* What one command to Redis carries: invalidations of one slot, or one
 * SET or FLUSHDB. */
enum tbatch_how {
	HOW_SCRIPT,	/* EVALSHA of pginval_invalidate */
	HOW_EVAL,	/* its text: NOSCRIPT was seen */
	HOW_UNLINK,	/* markers off, or the script failed */
	HOW_ONE,	/* c[0]'s SET or FLUSHDB */
};

struct tbatch {
	enum tbatch_how how;
	int slot;		/* REDIS_ROUTER_ANY outside a cluster */
	size_t n;
	struct tcmd *c[];
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
	size_t inflight;		/* commands with the router */
	ev_prepare pump_w;		/* sends what queued up, once per loop */
	char inval_sha[41], fill_sha[41];
	bool scripts_refused;		/* NOPERM, since the last connect */
	/* Scratch for one command: its arguments, and the text they point
	 * into (markers, numbers) as offsets, since the text may move. */
	const char **argv;
	size_t *argvlen, *argoff, nargv;
	struct buf text;
	struct apply_stats *stats;
	struct log_limit complaints;	/* about error replies */
	unsigned long history_breaks;	/* REDIS_CONN_EVENT_FORGOT */
};

static void target_schedule(struct apply_target *t);

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

static void
batch_free(struct tbatch *b)
{
	for (size_t i = 0; i < b->n; i++)
		cmd_free(b->c[i]);
	free(b);
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

/* -- building a command's arguments in the scratch ------------------------ */

static void
arg_room(struct apply_target *t, size_t n)
{
	if (n <= t->nargv)
		return;
	t->argv = xrealloc(t->argv, n * sizeof(*t->argv));
	t->argvlen = xrealloc(t->argvlen, n * sizeof(*t->argvlen));
	t->argoff = xrealloc(t->argoff, n * sizeof(*t->argoff));
	t->nargv = n;
}

/* Argument i is a constant (or text that outlives the send). */
static void
arg_const(struct apply_target *t, size_t i, const char *s, size_t len)
{
	t->argv[i] = s;
	t->argvlen[i] = len;
	t->argoff[i] = SIZE_MAX;
}

/* Argument i starts at the scratch text's end; the caller appends it. */
static void
arg_text(struct apply_target *t, size_t i)
{
	t->argoff[i] = t->text.len;
}

static void
arg_text_end(struct apply_target *t, size_t i)
{
	t->argvlen[i] = t->text.len - t->argoff[i];
}

static void
arg_num(struct apply_target *t, size_t i, long long v)
{
	char num[24];

	arg_text(t, i);
	buf_add(&t->text, num, (size_t)snprintf(num, sizeof(num), "%lld", v));
	arg_text_end(t, i);
}

/* The invalidations of b as EVALSHA/EVAL sha|script 2n keys markers
 * ttl margin ts..., or as UNLINK keys; returns argc. */
static size_t
batch_args(struct apply_target *t, const struct tbatch *b)
{
	size_t n = b->n, a = 0;
	bool text = b->how == HOW_EVAL || t->inval_sha[0] == '\0';

	if (b->how == HOW_UNLINK) {
		arg_room(t, 1 + n);
		arg_const(t, a++, "UNLINK", 6);
		for (size_t i = 0; i < n; i++)
			arg_const(t, a++, b->c[i]->key.data ? b->c[i]->key.data :
			    "", b->c[i]->key.len);
		return a;
	}
	arg_room(t, 5 + 3 * n);
	arg_const(t, a++, text ? "EVAL" : "EVALSHA", text ? 4 : 7);
	if (text)
		arg_const(t, a++, invalidate_lua, sizeof(invalidate_lua) - 1);
	else
		arg_const(t, a++, t->inval_sha, strlen(t->inval_sha));
	arg_num(t, a++, (long long)(2 * n));
	for (size_t i = 0; i < n; i++)
		arg_const(t, a++, b->c[i]->key.data ? b->c[i]->key.data : "",
		    b->c[i]->key.len);
	for (size_t i = 0; i < n; i++, a++) {
		arg_text(t, a);
		apply_marker_name(b->c[i]->key.data ? b->c[i]->key.data : "",
		    b->c[i]->key.len, &t->text);
		arg_text_end(t, a);
	}
	arg_num(t, a++, (long long)(t->o.marker_ttl * 1000));
	arg_num(t, a++, (long long)(t->o.marker_margin * 1e6));
	/* Times up to the last change; the rest share it. */
	while (n > 1 && b->c[n - 1]->ts == b->c[n - 2]->ts)
		n--;
	for (size_t i = 0; i < n; i++)
		arg_num(t, a++, (long long)b->c[i]->ts);
	return a;
}

static void target_batch_cb(void *arg, redisReply *reply, void *privdata);

/* Hands b to the router, which keeps it until Redis answers. */
static void
target_send(struct apply_target *t, struct tbatch *b)
{
	struct tcmd *c = b->c[0];
	size_t argc;

	buf_reset(&t->text);
	if (b->how != HOW_ONE) {
		argc = batch_args(t, b);
	} else if (c->kind == TCMD_SET) {
		arg_room(t, 5);
		arg_const(t, 0, "SET", 3);
		arg_const(t, 1, c->key.data ? c->key.data : "", c->key.len);
		arg_const(t, 2, c->value.data ? c->value.data : "",
		    c->value.len);
		arg_const(t, 3, "PX", 2);
		arg_num(t, 4, c->ttl_ms);
		argc = 5;
	} else {
		arg_room(t, 2);
		arg_const(t, 0, "FLUSHDB", 7);
		arg_const(t, 1, "ASYNC", 5);
		argc = 2;
	}
	for (size_t i = 0; i < argc; i++)
		if (t->argoff[i] != SIZE_MAX)
			t->argv[i] = t->text.data + t->argoff[i];
	t->inflight++;
	redis_router_command(t->router, b->slot, c->to, target_batch_cb, b,
	    (int)argc, t->argv, t->argvlen);
}

static void
target_batch_cb(void *arg, redisReply *reply, void *privdata)
{
	struct apply_target *t = arg;
	struct tbatch *b = privdata;
	struct tcmd *c = b->c[0];

	if (t->inflight > 0)
		t->inflight--;
	if (reply == NULL) {	/* the target is being freed */
		batch_free(b);
		return;
	}
	if (reply->type == REDIS_REPLY_ERROR) {
		if (b->how == HOW_SCRIPT &&
		    strncmp(reply->str, "NOSCRIPT", 8) == 0) {
			b->how = HOW_EVAL;
			target_send(t, b);
			return;
		}
		if (b->how == HOW_SCRIPT || b->how == HOW_EVAL) {
			/* Deleted even where scripts are forbidden; an ACL
			 * that forbids them is not asked again until the next
			 * connect. */
			if (strncmp(reply->str, "NOPERM", 6) == 0 &&
			    !t->scripts_refused) {
				t->scripts_refused = true;
				log_warnx("target %s: scripts are refused; "
				    "invalidating with plain UNLINKs, without "
				    "markers, until the next connect", t->name);
			}
			target_complain(t, "pginval_invalidate (falling back to "
			    "UNLINK)", reply->str);
			b->how = HOW_UNLINK;
			target_send(t, b);
			return;
		}
		target_complain(t, b->how == HOW_UNLINK ? "UNLINK" :
		    c->kind == TCMD_SET ? "SET" : "FLUSHDB", reply->str);
	} else if (b->how != HOW_ONE) {
		double now = target_now_us();

		t->stats->keys_deleted += b->n;
		if (reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
			t->stats->keys_existed += (unsigned long)reply->integer;
		for (size_t i = 0; i < b->n; i++)
			if (b->c[i]->ts > 0)
				hist_observe(&t->stats->lag,
				    (now - (double)b->c[i]->ts) / 1e6);
	}
	batch_free(b);
	target_schedule(t);
}

static struct tbatch *
batch_new(enum tbatch_how how, int slot, size_t n)
{
	struct tbatch *b = xmalloc(sizeof(*b) + n * sizeof(b->c[0]));

	b->how = how;
	b->slot = slot;
	b->n = 0;
	return b;
}

/*
 * Takes the invalidations at the queue's head, up to TARGET_BATCH (in a
 * cluster, no more than budget, so that their slots make at most budget
 * commands), and sends them in one command per slot.
 */
static void
target_gather(struct apply_target *t, size_t budget)
{
	const char *keys[TARGET_BATCH];
	size_t lens[TARGET_BATCH], order[TARGET_BATCH], n = 0;
	uint16_t slot[TARGET_BATCH];
	struct tcmd *c[TARGET_BATCH];
	bool cluster = redis_router_cluster(t->router);
	enum tbatch_how how = t->o.markers && !t->scripts_refused ?
	    HOW_SCRIPT : HOW_UNLINK;
	size_t max = cluster && budget < TARGET_BATCH ? budget : TARGET_BATCH;

	while (n < max && t->queue.head != NULL &&
	    ((struct tcmd *)t->queue.head)->kind == TCMD_INVALIDATE) {
		c[n] = cmd_pop(&t->queue);
		keys[n] = c[n]->key.data ? c[n]->key.data : "";
		lens[n] = c[n]->key.len;
		n++;
	}
	if (!cluster) {
		struct tbatch *b = batch_new(how, REDIS_ROUTER_ANY, n);

		for (size_t i = 0; i < n; i++)
			b->c[b->n++] = c[i];
		target_send(t, b);
		return;
	}
	redis_slots_group(keys, lens, n, slot, order);
	for (size_t i = 0, run; i < n; i += run) {
		struct tbatch *b;

		run = redis_slots_run(slot, order, n, i);
		b = batch_new(how, slot[order[i]], run);
		for (size_t j = i; j < i + run; j++)
			b->c[b->n++] = c[order[j]];
		target_send(t, b);
	}
}

static void
target_pump(struct apply_target *t)
{
	while (t->inflight < (size_t)t->o.max_inflight && t->queue.n > 0) {
		struct tcmd *c = (struct tcmd *)t->queue.head;
		struct tbatch *b;

		if (c->kind == TCMD_INVALIDATE) {
			target_gather(t, (size_t)t->o.max_inflight -
			    t->inflight);
			continue;
		}
		b = batch_new(HOW_ONE, c->kind == TCMD_FLUSH ?
		    REDIS_ROUTER_ANY : redis_router_cluster(t->router) ?
		    (int)redis_keyslot(c->key.data ? c->key.data : "",
		    c->key.len) : REDIS_ROUTER_ANY, 1);
		b->c[b->n++] = cmd_pop(&t->queue);
		target_send(t, b);
	}
}

/* Before the loop next waits: by then every message read in this turn
 * has queued its keys, so they go out in as few commands as can be. */
static void
target_pump_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct apply_target *t = w->data;

	(void)revents;
	ev_prepare_stop(loop, w);
	target_pump(t);
}

static void
target_schedule(struct apply_target *t)
{
	if (t->queue.n > 0)
		ev_prepare_start(t->loop, &t->pump_w);
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
		target_load(conn, "SCRIPT LOAD", invalidate_lua, t->inval_sha);
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
