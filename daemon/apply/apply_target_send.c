/*
 * Sending a target's queue (apply_target.c): the invalidations at its
 * head go in one command per key slot, at most TARGET_BATCH keys each,
 * as the invalidation script (EVALSHA; EVAL after NOSCRIPT; plain
 * UNLINK with markers off, or when scripts fail); SETs and FLUSHDBs go
 * alone. Each command carries its batch as privdata, so its reply (or
 * the NULL of a router being freed) finds the keys it answers.
 */
#include "apply/apply_key.h"
#include "apply/apply_stats.h"
#include "apply/apply_target_int.h"
#include "lib/hist.h"
#include "lib/redis_router.h"
#include "lib/redis_slots.h"
#include "lib/xalloc.h"

#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
const char target_invalidate_lua[] =
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

static void
batch_free(struct tbatch *b)
{
	for (size_t i = 0; i < b->n; i++)
		target_cmd_free(b->c[i]);
	free(b);
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
		arg_const(t, a++, target_invalidate_lua, sizeof(target_invalidate_lua) - 1);
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
	target_settle(t);
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
		c[n] = (struct tcmd *)fifo_pop(&t->queue);
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
		b->c[b->n++] = (struct tcmd *)fifo_pop(&t->queue);
		target_send(t, b);
	}
}

/* Before the loop next waits: by then every message read in this turn
 * has queued its keys, so they go out in as few commands as can be. */
void
target_pump_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct apply_target *t = w->data;

	(void)revents;
	ev_prepare_stop(loop, w);
	target_pump(t);
}

void
target_schedule(struct apply_target *t)
{
	if (t->queue.n > 0)
		ev_prepare_start(t->loop, &t->pump_w);
}
