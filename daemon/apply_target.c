/*
 * A target Redis of pginval apply. One hiredis async context on the libev
 * loop. Commands are pipelined from a FIFO queue with at most
 * max_inflight awaiting replies; each carries its own struct as privdata,
 * so a reply, or the NULL that hiredis passes when the link drops, finds
 * the command it answers. Dropped commands go back to the front of the
 * queue in their order and are sent again after the reconnect.
 *
 * At each connect the handshake loads both Lua scripts (SCRIPT LOAD), so
 * invalidations can use EVALSHA and readers find pginval_fill cached. A
 * NOSCRIPT reply (SCRIPT FLUSH since) sends that invalidation again as
 * EVAL; any other script error falls back to a plain UNLINK, so the key
 * is deleted even where scripts are forbidden.
 *
 * hiredis rules followed here, as in redis_sink.c: never free the context
 * in its connect or disconnect callback; a failed connect reports only
 * through the connect callback; own timers for connecting and for
 * commands, since the libev adapter has none.
 */
#include "apply_target.h"
#include "apply_key.h"
#include "backoff.h"
#include "buf.h"
#include "log.h"

#include <ev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define SCAN_COUNT "1000"

/* The reader's side, shipped as daemon/fill.lua (see there). */
static const char fill_lua[] =
#include "fill_lua.h"
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
	struct tcmd *next;
	enum tcmd_kind kind;
	struct buf key, value;
	int64_t ts;		/* change time, for the marker and the lag */
	long ttl_ms;
	bool eval;		/* send the script's text: NOSCRIPT was seen */
};

struct cmd_list {
	struct tcmd *head, *tail;
	size_t n;
};

struct sweep {
	struct sweep *next;
	char *pattern;
	char cursor[24];
	bool running;		/* a SCAN is awaiting its reply */
	bool again;		/* asked for again while running */
};

struct apply_target {
	struct ev_loop *loop;
	apply_target_cb *cb;
	void *arg;
	struct apply_target_opts o;	/* numbers; strings are below */
	char *name, *host, *unix_path, *user, *password, *where;
	struct backoff backoff;

	enum apply_target_state state;
	redisAsyncContext *ac;
	ev_timer timer;		/* connect timeout, or backoff */
	ev_timer tick;		/* health PING and command timeout */
	int handshake;		/* replies still expected before READY */
	bool ever_ready;

	struct cmd_list queue;		/* waiting to be sent */
	struct cmd_list requeue;	/* collected while the link drops */
	size_t inflight;
	struct sweep *sweeps;
	unsigned outstanding;		/* every command awaiting a reply */
	ev_tstamp progress_at;
	char inval_sha[41], fill_sha[41];
	struct buf marker;		/* scratch */
	struct apply_stats *stats;
	ev_tstamp complain_at;
	unsigned complaints;
};

static void target_connect(struct apply_target *t);
static void target_pump(struct apply_target *t);
static void target_scan(struct apply_target *t, struct sweep *s);

static const char *const target_state_names[] = {
	[TARGET_STATE_STOPPED] = "stopped",
	[TARGET_STATE_CONNECTING] = "connecting",
	[TARGET_STATE_HANDSHAKE] = "handshake",
	[TARGET_STATE_READY] = "ready",
	[TARGET_STATE_BACKOFF] = "backoff",
};

const char *
apply_target_state_name(enum apply_target_state st)
{
	return target_state_names[st];
}

static void
target_set_state(struct apply_target *t, enum apply_target_state st)
{
	if (t->state == st)
		return;
	log_debug("target %s: %s -> %s", t->name, target_state_names[t->state],
	    target_state_names[st]);
	t->state = st;
}

static void
cmd_push(struct cmd_list *l, struct tcmd *c)
{
	c->next = NULL;
	if (l->tail != NULL)
		l->tail->next = c;
	else
		l->head = c;
	l->tail = c;
	l->n++;
}

static struct tcmd *
cmd_pop(struct cmd_list *l)
{
	struct tcmd *c = l->head;

	if (c == NULL)
		return NULL;
	l->head = c->next;
	if (l->head == NULL)
		l->tail = NULL;
	l->n--;
	c->next = NULL;
	return c;
}

static void
cmd_free(struct tcmd *c)
{
	buf_free(&c->key);
	buf_free(&c->value);
	free(c);
}

static void
cmd_list_free(struct cmd_list *l)
{
	struct tcmd *c;

	while ((c = cmd_pop(l)) != NULL)
		cmd_free(c);
}

/* Moves all of from to the front of to. */
static void
cmd_list_prepend(struct cmd_list *to, struct cmd_list *from)
{
	if (from->head == NULL)
		return;
	from->tail->next = to->head;
	if (to->tail == NULL)
		to->tail = from->tail;
	to->head = from->head;
	to->n += from->n;
	memset(from, 0, sizeof(*from));
}

/* Error replies are logged at most 10 times per 10 s, and all counted. */
static void
target_complain(struct apply_target *t, const char *what, const char *err)
{
	ev_tstamp now = ev_now(t->loop);

	t->stats->command_errors++;
	if (now - t->complain_at >= 10) {
		t->complain_at = now;
		t->complaints = 0;
	}
	if (t->complaints++ < 10)
		log_error("target %s: %s failed: %s", t->name, what, err);
}

static void
target_sent(struct apply_target *t)
{
	if (t->outstanding++ == 0)
		t->progress_at = ev_now(t->loop);
}

static void
target_replied(struct apply_target *t)
{
	if (t->outstanding > 0)
		t->outstanding--;
	t->progress_at = ev_now(t->loop);
}

static double
target_now_us(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return (double)now.tv_sec * 1e6 + (double)now.tv_nsec / 1e3;
}

static void target_cmd_cb(redisAsyncContext *ac, void *r, void *privdata);

/* Sends c; on failure (only while disconnecting) it waits in requeue. */
static int
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
	if (redisAsyncCommandArgv(t->ac, target_cmd_cb, c, argc, argv,
	    argvlen) != REDIS_OK) {
		cmd_push(&t->requeue, c);
		return -1;
	}
	t->inflight++;
	target_sent(t);
	return 0;
}

static void
target_cmd_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct apply_target *t = ac->data;
	struct tcmd *c = privdata;
	redisReply *reply = r;

	if (t->inflight > 0)
		t->inflight--;
	if (reply == NULL) {
		/* The link dropped before the reply: send it again later. */
		cmd_push(&t->requeue, c);
		return;
	}
	target_replied(t);
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
			stats_observe_lag(&t->stats->lag,
			    (target_now_us() - (double)c->ts) / 1e6);
	}
	cmd_free(c);
	target_pump(t);
}

static void
target_enqueue(struct apply_target *t, struct tcmd *c)
{
	if (t->queue.n + t->requeue.n >= (size_t)t->o.max_queue) {
		/* Memory stays bounded however long the target is away: what
		 * is waiting is replaced by a reset of the target. */
		log_warnx("target %s: %zu commands waiting, the limit; dropping "
		    "them for a reset", t->name, t->queue.n + t->requeue.n);
		cmd_list_free(&t->queue);
		cmd_free(c);
		t->stats->overflows++;
		t->cb(t->arg, t, TARGET_EVENT_OVERFLOW);
		return;
	}
	cmd_push(&t->queue, c);
	target_pump(t);
}

static void
target_pump(struct apply_target *t)
{
	struct tcmd *c;

	while (t->state == TARGET_STATE_READY && t->ac != NULL &&
	    t->inflight < (size_t)t->o.max_inflight &&
	    (c = cmd_pop(&t->queue)) != NULL)
		if (target_send(t, c) == -1)
			break;
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

void
apply_target_flush(struct apply_target *t)
{
	target_enqueue(t, cmd_new(TCMD_FLUSH, "", 0, 0));
}

/* -- sweeps: SCAN cursor MATCH pattern COUNT 1000, UNLINK what it finds -- */

static void
target_sweep_unlink_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct apply_target *t = ac->data;
	redisReply *reply = r;

	if (reply == NULL)
		return;
	target_replied(t);
	if (reply->type == REDIS_REPLY_INTEGER)
		t->stats->swept += (unsigned long)reply->integer;
	else if (reply->type == REDIS_REPLY_ERROR)
		target_complain(t, "UNLINK (sweep)", reply->str);
}

static void
target_sweep_done(struct apply_target *t, struct sweep *s)
{
	for (struct sweep **pp = &t->sweeps; *pp != NULL; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	free(s->pattern);
	free(s);
}

static void
target_scan_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct apply_target *t = ac->data;
	struct sweep *s = privdata;
	redisReply *reply = r, *keys;

	s->running = false;
	if (reply == NULL)
		return;	/* started again after the reconnect */
	target_replied(t);
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
	    reply->element[0]->type != REDIS_REPLY_STRING ||
	    reply->element[1]->type != REDIS_REPLY_ARRAY) {
		target_complain(t, "SCAN (keys matching it may remain)",
		    reply->type == REDIS_REPLY_ERROR ? reply->str :
		    "unexpected reply");
		target_sweep_done(t, s);
		return;
	}
	keys = reply->element[1];
	if (keys->elements > 0) {
		const char **argv = xmalloc((keys->elements + 1) * sizeof(*argv));
		size_t *argvlen = xmalloc((keys->elements + 1) * sizeof(*argvlen));
		int argc = 1;

		argv[0] = "UNLINK";
		argvlen[0] = 6;
		for (size_t i = 0; i < keys->elements; i++)
			if (keys->element[i]->type == REDIS_REPLY_STRING) {
				argv[argc] = keys->element[i]->str;
				argvlen[argc++] = keys->element[i]->len;
			}
		if (argc > 1 && redisAsyncCommandArgv(ac, target_sweep_unlink_cb,
		    NULL, argc, argv, argvlen) == REDIS_OK)
			target_sent(t);
		free(argv);
		free(argvlen);
	}
	snprintf(s->cursor, sizeof(s->cursor), "%s", reply->element[0]->str);
	if (strcmp(s->cursor, "0") == 0) {
		if (!s->again) {
			log_debug("target %s: swept keys matching \"%s\"", t->name,
			    s->pattern);
			target_sweep_done(t, s);
			return;
		}
		s->again = false;
	}
	target_scan(t, s);
}

static void
target_scan(struct apply_target *t, struct sweep *s)
{
	if (t->state != TARGET_STATE_READY || t->ac == NULL)
		return;
	s->running = redisAsyncCommand(t->ac, target_scan_cb, s,
	    "SCAN %s MATCH %s COUNT " SCAN_COUNT, s->cursor, s->pattern) ==
	    REDIS_OK;
	if (s->running)
		target_sent(t);
}

void
apply_target_sweep(struct apply_target *t, const char *pattern)
{
	struct sweep *s;

	for (s = t->sweeps; s != NULL; s = s->next)
		if (strcmp(s->pattern, pattern) == 0) {
			/* Keys it has passed may have been cached again
			 * since: go round once more. */
			s->again = true;
			return;
		}
	s = xcalloc(1, sizeof(*s));
	s->pattern = xstrdup(pattern);
	strcpy(s->cursor, "0");
	s->next = t->sweeps;
	t->sweeps = s;
	target_scan(t, s);
}

/* -- the connection -------------------------------------------------------- */

static void
target_lost(struct apply_target *t, const char *why)
{
	bool was_ready = t->state == TARGET_STATE_READY ||
	    t->state == TARGET_STATE_HANDSHAKE;
	double delay;

	ev_timer_stop(t->loop, &t->timer);
	ev_timer_stop(t->loop, &t->tick);
	t->ac = NULL;
	t->outstanding = 0;
	t->inflight = 0;
	cmd_list_prepend(&t->queue, &t->requeue);
	for (struct sweep *s = t->sweeps; s != NULL; s = s->next) {
		/* Start over: the server may be a new one. */
		s->running = false;
		strcpy(s->cursor, "0");
	}
	if (t->state == TARGET_STATE_STOPPED)
		return;
	delay = backoff_next(&t->backoff);
	log_warnx("target %s: %s (%s); %zu commands queued, retrying in %.1fs",
	    t->name, why, t->where, t->queue.n, delay);
	target_set_state(t, TARGET_STATE_BACKOFF);
	ev_timer_set(&t->timer, delay, 0);
	ev_timer_start(t->loop, &t->timer);
	if (was_ready)
		t->cb(t->arg, t, TARGET_EVENT_LOST);
}

/* Drops the connection from outside any hiredis callback. */
static void
target_drop(struct apply_target *t, const char *why)
{
	redisAsyncContext *ac = t->ac;

	t->ac = NULL;	/* the disconnect callback sees it is expected */
	if (ac != NULL)
		redisAsyncFree(ac);
	target_lost(t, why);
}

static double
target_tick_interval(const struct apply_target *t)
{
	double i = t->o.command_timeout / 4;

	if (t->o.health_interval > 0 && t->o.health_interval / 2 < i)
		i = t->o.health_interval / 2;
	return i < 1 ? i : 1;
}

static void
target_ready(struct apply_target *t)
{
	target_set_state(t, TARGET_STATE_READY);
	backoff_reset(&t->backoff);
	if (t->ever_ready)
		t->stats->target_reconnects++;
	t->ever_ready = true;
	log_info("target %s: connected to %s (fill script %s)", t->name,
	    t->where, t->fill_sha);
	t->cb(t->arg, t, TARGET_EVENT_READY);
	for (struct sweep *s = t->sweeps; s != NULL; s = s->next)
		if (!s->running)
			target_scan(t, s);
	target_pump(t);
}

/* Names passed as privdata, for the handshake's replies. */
static char cmd_auth[] = "AUTH", cmd_select[] = "SELECT",
    cmd_setname[] = "CLIENT SETNAME", cmd_load_inval[] = "SCRIPT LOAD",
    cmd_load_fill[] = "SCRIPT LOAD (fill)";

static void
target_handshake_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct apply_target *t = ac->data;
	redisReply *reply = r;

	if (reply == NULL)
		return;
	target_replied(t);
	if (t->handshake <= 0)
		return;	/* an earlier step failed; disconnecting */
	if (reply->type == REDIS_REPLY_ERROR && privdata == cmd_setname) {
		log_debug("target %s: CLIENT SETNAME refused: %s", t->name,
		    reply->str);
	} else if (reply->type == REDIS_REPLY_ERROR) {
		log_error("target %s: %s failed on %s: %s", t->name,
		    (const char *)privdata, t->where, reply->str);
		t->handshake = 0;
		redisAsyncDisconnect(ac);	/* the callback retries */
		return;
	} else if (privdata == cmd_load_inval || privdata == cmd_load_fill) {
		char *sha = privdata == cmd_load_inval ? t->inval_sha :
		    t->fill_sha;

		if (reply->type == REDIS_REPLY_STRING)
			snprintf(sha, 41, "%.*s", (int)reply->len, reply->str);
	}
	if (--t->handshake == 0)
		target_ready(t);
}

static void
target_handshake(struct apply_target *t, char *name, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = redisvAsyncCommand(t->ac, target_handshake_cb, name, fmt, ap);
	va_end(ap);
	if (rc == REDIS_OK) {
		t->handshake++;
		target_sent(t);
	}
}

/* TCP keepalive finds a peer that vanished while the link was idle. */
static void
target_keepalive(int fd, double interval)
{
	int on = 1, idle = interval >= 2 ? (int)interval : 2;
	int intvl = idle / 3 > 0 ? idle / 3 : 1, cnt = 3;
	unsigned timeout = (unsigned)(idle + intvl * cnt) * 1000;

	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout,
	    sizeof(timeout));
}

static void
target_connect_cb(const redisAsyncContext *ac, int status)
{
	struct apply_target *t = ac->data;

	if (t == NULL || t->ac != ac)
		return;
	if (status != REDIS_OK) {
		char why[256];

		snprintf(why, sizeof(why), "cannot connect: %s", ac->errstr);
		t->ac = NULL;	/* hiredis frees it after we return */
		target_lost(t, why);
		return;
	}
	ev_timer_stop(t->loop, &t->timer);
	if (t->host != NULL)
		target_keepalive(ac->c.fd, t->o.health_interval > 0 ?
		    t->o.health_interval : 30);
	t->handshake = 0;
	t->inval_sha[0] = t->fill_sha[0] = '\0';
	target_set_state(t, TARGET_STATE_HANDSHAKE);
	if (t->password != NULL && t->user != NULL)
		target_handshake(t, cmd_auth, "AUTH %s %s", t->user, t->password);
	else if (t->password != NULL)
		target_handshake(t, cmd_auth, "AUTH %s", t->password);
	if (t->o.db != 0)
		target_handshake(t, cmd_select, "SELECT %d", t->o.db);
	target_handshake(t, cmd_setname, "CLIENT SETNAME pginval-apply");
	target_handshake(t, cmd_load_inval, "SCRIPT LOAD %s", invalidate_lua);
	target_handshake(t, cmd_load_fill, "SCRIPT LOAD %s", fill_lua);
	ev_timer_set(&t->tick, target_tick_interval(t), target_tick_interval(t));
	ev_timer_start(t->loop, &t->tick);
	if (t->handshake == 0)
		target_drop(t, "cannot send the handshake");
}

static void
target_disconnect_cb(const redisAsyncContext *ac, int status)
{
	struct apply_target *t = ac->data;
	char why[256];

	if (t == NULL || t->ac != ac)
		return;	/* we freed it ourselves */
	snprintf(why, sizeof(why), "connection lost: %s",
	    status == REDIS_OK ? "closed" : ac->errstr);
	t->ac = NULL;	/* hiredis frees it after we return */
	target_lost(t, why);
}

static void
target_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct apply_target *t = w->data;

	if (t->state == TARGET_STATE_BACKOFF)
		target_connect(t);
	else if (t->state == TARGET_STATE_CONNECTING)
		target_drop(t, "timed out connecting");
}

static void
target_ping_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	if (r != NULL)
		target_replied(ac->data);
}

static void
target_tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct apply_target *t = w->data;

	/* An idle link is proved alive with a PING, so that a dead one is
	 * found by the command timeout, not by the next invalidation. */
	if (t->state == TARGET_STATE_READY && t->outstanding == 0 &&
	    t->o.health_interval > 0 &&
	    ev_now(loop) - t->progress_at >= t->o.health_interval &&
	    redisAsyncCommand(t->ac, target_ping_cb, NULL, "PING") == REDIS_OK)
		target_sent(t);
	if (t->ac != NULL && t->outstanding > 0 &&
	    ev_now(loop) - t->progress_at > t->o.command_timeout) {
		char why[96];

		snprintf(why, sizeof(why), "no reply for %.1fs",
		    ev_now(loop) - t->progress_at);
		target_drop(t, why);
	}
}

static void
target_connect(struct apply_target *t)
{
	redisAsyncContext *ac;

	target_set_state(t, TARGET_STATE_CONNECTING);
	/* Note: a host name is resolved with a blocking getaddrinfo. */
	ac = t->host != NULL ? redisAsyncConnect(t->host, t->o.port) :
	    redisAsyncConnectUnix(t->unix_path);
	if (ac == NULL || ac->err) {
		char why[256];

		snprintf(why, sizeof(why), "cannot connect: %s",
		    ac ? ac->errstr : "out of memory");
		if (ac != NULL)
			redisAsyncFree(ac);
		target_lost(t, why);
		return;
	}
	ac->data = t;
	t->ac = ac;
	if (redisLibevAttach(t->loop, ac) != REDIS_OK) {
		target_drop(t, "cannot attach to the event loop");
		return;
	}
	redisAsyncSetConnectCallback(ac, target_connect_cb);
	redisAsyncSetDisconnectCallback(ac, target_disconnect_cb);
	ev_timer_set(&t->timer, t->o.connect_timeout, 0);
	ev_timer_start(t->loop, &t->timer);
}

static char *
dup_or_null(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

struct apply_target *
apply_target_new(struct ev_loop *loop, const struct apply_target_opts *opts,
    apply_target_cb *cb, void *arg)
{
	struct apply_target *t = xcalloc(1, sizeof(*t));

	t->loop = loop;
	t->cb = cb;
	t->arg = arg;
	t->o = *opts;
	t->o.name = t->o.host = t->o.unix_path = t->o.user = NULL;
	t->o.password = t->o.where = NULL;
	t->o.stats = NULL;
	t->stats = opts->stats;
	t->name = xstrdup(opts->name);
	t->host = dup_or_null(opts->host);
	t->unix_path = dup_or_null(opts->unix_path);
	t->user = dup_or_null(opts->user);
	t->password = dup_or_null(opts->password);
	t->where = xstrdup(opts->where);
	t->backoff.min = opts->reconnect_min;
	t->backoff.max = opts->reconnect_max;
	ev_timer_init(&t->timer, target_timer_cb, 0, 0);
	t->timer.data = t;
	ev_timer_init(&t->tick, target_tick_cb, 1, 1);
	t->tick.data = t;
	return t;
}

void
apply_target_start(struct apply_target *t)
{
	if (t->state == TARGET_STATE_STOPPED)
		target_connect(t);
}

void
apply_target_tune(struct apply_target *t, const struct apply_target_opts *o)
{
	t->o.max_inflight = o->max_inflight;
	t->o.max_queue = o->max_queue;
	t->o.command_timeout = o->command_timeout;
	t->o.marker_ttl = o->marker_ttl;
	t->o.marker_margin = o->marker_margin;
	t->backoff.min = t->o.reconnect_min = o->reconnect_min;
	t->backoff.max = t->o.reconnect_max = o->reconnect_max;
	target_pump(t);
}

void
apply_target_free(struct apply_target *t)
{
	struct sweep *s;

	if (t == NULL)
		return;
	target_set_state(t, TARGET_STATE_STOPPED);
	if (t->ac != NULL) {
		redisAsyncContext *ac = t->ac;

		t->ac = NULL;
		redisAsyncFree(ac);	/* pending commands come back to requeue */
	}
	ev_timer_stop(t->loop, &t->timer);
	ev_timer_stop(t->loop, &t->tick);
	cmd_list_free(&t->queue);
	cmd_list_free(&t->requeue);
	while ((s = t->sweeps) != NULL) {
		t->sweeps = s->next;
		free(s->pattern);
		free(s);
	}
	buf_free(&t->marker);
	free(t->name);
	free(t->host);
	free(t->unix_path);
	free(t->user);
	free(t->password);
	free(t->where);
	free(t);
}

bool
apply_target_busy(const struct apply_target *t)
{
	return t->queue.n > 0 || t->requeue.n > 0 || t->inflight > 0 ||
	    t->sweeps != NULL;
}

size_t
apply_target_queued(const struct apply_target *t)
{
	return t->queue.n + t->requeue.n;
}

size_t
apply_target_inflight(const struct apply_target *t)
{
	return t->inflight;
}

enum apply_target_state
apply_target_state(const struct apply_target *t)
{
	return t->state;
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
