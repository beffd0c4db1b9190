/*
 * Redis sink. One hiredis async context on the libev loop. Commands are
 * pipelined: each queued message becomes an optional UNLINK plus a PUBLISH,
 * and moves to the in-flight list until its reply arrives. hiredis 0.14
 * has no timeouts and an unbounded output buffer, so the window is capped
 * (max_inflight) and a periodic check drops a connection whose oldest
 * command has waited longer than command_timeout.
 *
 * hiredis rules followed here: the context is never freed inside its own
 * connect or disconnect callback; a failed connect reports only through
 * the connect callback; pending replies arrive as NULL when the link
 * drops, which is how in-flight messages find their way back to the queue.
 */
#include "redis_sink.h"
#include "backoff.h"
#include "buf.h"
#include "log.h"
#include "message.h"

#include <ev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libev.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SCAN_COUNT "1000"

struct msg_list {
	struct sink_msg *head, *tail;
	size_t n;
};

/* A SCAN + UNLINK sweep for one pattern (action = delete, on truncate or
 * reset). Restarted from the beginning if the connection drops. */
struct scan_job {
	struct scan_job *next;
	char *pattern;
	char cursor[24];
	bool running;
};

struct redis_sink {
	struct ev_loop *loop;
	redis_sink_cb *cb;
	void *arg;
	struct redis_sink_opts o;	/* numbers; strings are below */
	char *host, *unix_path, *user, *password, *where, *epoch, *channel;
	struct backoff backoff;

	enum redis_state state;
	redisAsyncContext *ac;
	ev_timer timer;		/* connect timeout, or backoff */
	ev_timer tick;		/* command timeout check */
	int handshake;		/* replies still expected before READY */
	bool ever_ready;

	struct msg_list queue;		/* waiting to be sent */
	struct msg_list inflight;	/* sent, awaiting a reply */
	struct msg_list requeue;	/* collected while the link drops */
	struct scan_job *scans;
	uint64_t seq;
	struct buf frame;
	struct buf body;		/* scratch for row messages */
	ev_prepare kick;		/* sends at the end of a loop iteration */
	ev_timer hold;			/* end of a coalescing window */
	unsigned outstanding;		/* commands awaiting a reply */
	size_t bytes;			/* memory held by messages */
	ev_tstamp progress_at;		/* last reply, or first command */
	struct stats *stats;
};

static void redis_sink_connect(struct redis_sink *s);
static void redis_sink_kick(struct redis_sink *s);
static void redis_sink_scan_next(struct redis_sink *s, struct scan_job *j);

static const char *const redis_state_names[] = {
	[REDIS_STATE_STOPPED] = "stopped",
	[REDIS_STATE_CONNECTING] = "connecting",
	[REDIS_STATE_HANDSHAKE] = "handshake",
	[REDIS_STATE_READY] = "ready", [REDIS_STATE_BACKOFF] = "backoff",
};

const char *
redis_state_name(enum redis_state st)
{
	return redis_state_names[st];
}

static void
redis_sink_set_state(struct redis_sink *s, enum redis_state st)
{
	if (s->state == st)
		return;
	log_debug("redis: %s -> %s", redis_state_names[s->state],
	    redis_state_names[st]);
	s->state = st;
}

static void
list_push(struct msg_list *l, struct sink_msg *m)
{
	m->next = NULL;
	if (l->tail != NULL)
		l->tail->next = m;
	else
		l->head = m;
	l->tail = m;
	l->n++;
}

static struct sink_msg *
list_pop(struct msg_list *l)
{
	struct sink_msg *m = l->head;

	if (m == NULL)
		return NULL;
	l->head = m->next;
	if (l->head == NULL)
		l->tail = NULL;
	l->n--;
	m->next = NULL;
	return m;
}

/* Moves all of from to the front of to. */
static void
list_prepend(struct msg_list *to, struct msg_list *from)
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

static void
list_free(struct msg_list *l)
{
	struct sink_msg *m;

	while ((m = list_pop(l)) != NULL)
		sink_msg_free(m);
}

struct sink_msg *
sink_msg_new(void)
{
	return xcalloc(1, sizeof(struct sink_msg));
}

/* Roughly the memory a message holds, for the queue's byte bound. */
static size_t
sink_msg_size(const struct sink_msg *m)
{
	return sizeof(*m) + m->body.cap + m->rows.cap + m->keys.data.cap +
	    m->keys.cap * 2 * sizeof(size_t) + m->patterns.data.cap;
}

/* Frees a message the sink held. */
static void
redis_sink_release(struct redis_sink *s, struct sink_msg *m)
{
	if (m == NULL)
		return;
	s->bytes -= sink_msg_size(m);
	sink_msg_free(m);
}

void
sink_msg_free(struct sink_msg *m)
{
	if (m == NULL)
		return;
	buf_free(&m->body);
	free(m->table);
	keys_free(&m->keys);
	buf_free(&m->rows);
	keys_free(&m->patterns);
	free(m);
}

static void
redis_sink_sent(struct redis_sink *s)
{
	if (s->outstanding++ == 0)
		s->progress_at = ev_now(s->loop);
}

static void
redis_sink_replied(struct redis_sink *s)
{
	if (s->outstanding > 0)
		s->outstanding--;
	s->progress_at = ev_now(s->loop);
}

static void
redis_sink_maybe_idle(struct redis_sink *s)
{
	if (s->queue.n == 0 && s->inflight.n == 0 && s->requeue.n == 0)
		s->cb(s->arg, REDIS_EVENT_IDLE);
}

/*
 * The connection is gone (or was never made). ac has already been freed or
 * is being freed by hiredis; only our bookkeeping is left to do.
 */
static void
redis_sink_lost(struct redis_sink *s, const char *why)
{
	bool was_ready = s->state == REDIS_STATE_READY ||
	    s->state == REDIS_STATE_HANDSHAKE;
	double delay;

	ev_timer_stop(s->loop, &s->timer);
	ev_timer_stop(s->loop, &s->tick);
	s->ac = NULL;
	s->outstanding = 0;
	/* Whatever was in flight goes back, in order, before the queue. */
	list_prepend(&s->requeue, &s->inflight);
	s->stats->requeued += s->requeue.n;
	list_prepend(&s->queue, &s->requeue);
	for (struct scan_job *j = s->scans; j != NULL; j = j->next)
		j->running = false;
	if (s->state == REDIS_STATE_STOPPED)
		return;
	delay = backoff_next(&s->backoff);
	log_warnx("redis: %s (%s); %zu messages queued, retrying in %.1fs",
	    why, s->where, s->queue.n, delay);
	redis_sink_set_state(s, REDIS_STATE_BACKOFF);
	ev_timer_set(&s->timer, delay, 0);
	ev_timer_start(s->loop, &s->timer);
	if (was_ready)
		s->cb(s->arg, REDIS_EVENT_LOST);
}

/* Drops the connection from outside any hiredis callback. */
static void
redis_sink_drop(struct redis_sink *s, const char *why)
{
	redisAsyncContext *ac = s->ac;

	s->ac = NULL;	/* the disconnect callback sees it is expected */
	if (ac != NULL)
		redisAsyncFree(ac);
	redis_sink_lost(s, why);
}

static void
redis_sink_publish_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct redis_sink *s = ac->data;
	struct sink_msg *m = list_pop(&s->inflight);
	redisReply *reply = r;

	(void)privdata;
	if (reply == NULL) {
		/* The link dropped before the reply: send it again later. */
		if (m != NULL)
			list_push(&s->requeue, m);
		return;
	}
	redis_sink_replied(s);
	/* A refused durable message is not acknowledged: its outbox row
	 * stays, and is taken again after the ack timeout. */
	if (m != NULL && m->on_ack != NULL && reply->type != REDIS_REPLY_ERROR)
		for (unsigned i = 0; i < m->nacks; i++)
			m->on_ack(m->ack_arg);
	if (reply->type == REDIS_REPLY_ERROR) {
		s->stats->refused++;
		log_error("redis: PUBLISH to \"%s\" refused: %s", s->channel,
		    reply->str);
		redis_sink_release(s, m);
		s->cb(s->arg, REDIS_EVENT_REFUSED);
	} else if (m != NULL) {
		struct timespec now;

		clock_gettime(CLOCK_REALTIME, &now);
		s->stats->published++;
		s->stats->keys_published += m->nkeys;
		if (m->ts > 0)
			stats_observe_lag(s->stats, ((double)now.tv_sec * 1e6 +
			    now.tv_nsec / 1e3 - (double)m->ts) / 1e6);
		redis_sink_release(s, m);
	}
	redis_sink_kick(s);
	redis_sink_maybe_idle(s);
}

static void
redis_sink_unlink_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct redis_sink *s = ac->data;
	redisReply *reply = r;

	(void)privdata;
	if (reply == NULL)
		return;
	redis_sink_replied(s);
	if (reply->type == REDIS_REPLY_INTEGER)
		s->stats->unlinked += (unsigned long)reply->integer;
	else if (reply->type == REDIS_REPLY_ERROR)
		log_error("redis: UNLINK failed: %s", reply->str);
}

static void
redis_sink_unlink(struct redis_sink *s, const struct keys *k, size_t from,
    size_t n)
{
	const char **argv = xmalloc((n + 1) * sizeof(*argv));
	size_t *argvlen = xmalloc((n + 1) * sizeof(*argvlen));

	argv[0] = "UNLINK";
	argvlen[0] = 6;
	for (size_t i = 0; i < n; i++)
		argv[i + 1] = keys_get(k, from + i, &argvlen[i + 1]);
	if (redisAsyncCommandArgv(s->ac, redis_sink_unlink_cb, NULL,
	    (int)(n + 1), argv, argvlen) == REDIS_OK)
		redis_sink_sent(s);
	free(argv);
	free(argvlen);
}

static void
redis_sink_scan_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct redis_sink *s = ac->data;
	struct scan_job *j = privdata, **pp;
	redisReply *reply = r, *keys;

	if (reply == NULL)
		return;	/* restarted after the reconnect */
	redis_sink_replied(s);
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
	    reply->element[0]->type != REDIS_REPLY_STRING ||
	    reply->element[1]->type != REDIS_REPLY_ARRAY) {
		log_error("redis: SCAN for \"%s\" failed: %s; keys matching it "
		    "may remain", j->pattern, reply->type == REDIS_REPLY_ERROR ?
		    reply->str : "unexpected reply");
		goto finished;
	}
	keys = reply->element[1];
	if (keys->elements > 0) {
		struct keys k = { 0 };

		for (size_t i = 0; i < keys->elements; i++)
			if (keys->element[i]->type == REDIS_REPLY_STRING)
				keys_add(&k, keys->element[i]->str,
				    keys->element[i]->len);
		if (k.n > 0)
			redis_sink_unlink(s, &k, 0, k.n);
		keys_free(&k);
	}
	snprintf(j->cursor, sizeof(j->cursor), "%s", reply->element[0]->str);
	if (strcmp(j->cursor, "0") != 0) {
		redis_sink_scan_next(s, j);
		return;
	}
	log_debug("redis: removed keys matching \"%s\"", j->pattern);
finished:
	for (pp = &s->scans; *pp != NULL; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	free(j->pattern);
	free(j);
}

static void
redis_sink_scan_next(struct redis_sink *s, struct scan_job *j)
{
	j->running = redisAsyncCommand(s->ac, redis_sink_scan_cb, j,
	    "SCAN %s MATCH %s COUNT " SCAN_COUNT, j->cursor, j->pattern) ==
	    REDIS_OK;
	if (j->running)
		redis_sink_sent(s);
}

static void
redis_sink_scans_resume(struct redis_sink *s)
{
	for (struct scan_job *j = s->scans; j != NULL; j = j->next)
		if (!j->running) {
			strcpy(j->cursor, "0");
			redis_sink_scan_next(s, j);
		}
}

static void
redis_sink_add_scans(struct redis_sink *s, const struct keys *patterns)
{
	for (size_t i = 0; i < patterns->n; i++) {
		size_t len;
		const char *p = keys_get(patterns, i, &len);
		struct scan_job *j = xcalloc(1, sizeof(*j));

		j->pattern = xstrndup(p, len);
		strcpy(j->cursor, "0");
		j->next = s->scans;
		s->scans = j;
		redis_sink_scan_next(s, j);
	}
}

/* Whether b can merge into a: row changes of the same table and op, for
 * the same acknowledgement, within the key limit. */
static bool
redis_sink_mergeable(const struct redis_sink *s, const struct sink_msg *a,
    const struct sink_msg *b)
{
	return a->op != NULL && a->op == b->op && a->on_ack == b->on_ack &&
	    a->ack_arg == b->ack_arg && strcmp(a->table, b->table) == 0 &&
	    a->keys.n + b->keys.n <= (size_t)s->o.max_keys;
}

/* Merges b into a and frees b. A key made stale twice goes out once. */
static void
redis_sink_merge(struct sink_msg *a, struct sink_msg *b)
{
	for (size_t i = 0; i < b->keys.n; i++) {
		size_t len;
		const char *k = keys_get(&b->keys, i, &len);

		keys_add(&a->keys, k, len);
	}
	buf_addc(&a->rows, ',');
	buf_add(&a->rows, b->rows.data, b->rows.len);
	a->nrows += b->nrows;
	a->nacks += b->nacks;
	if (b->ts < a->ts)
		a->ts = b->ts;
	sink_msg_free(b);
}

static void
redis_sink_kick(struct redis_sink *s)
{
	ev_prepare_start(s->loop, &s->kick);
}

/* Sends queued messages while the window has room. */
static void
redis_sink_pump(struct redis_sink *s)
{
	struct sink_msg *m;

	while (s->state == REDIS_STATE_READY && s->ac != NULL &&
	    s->inflight.n < (size_t)s->o.max_inflight &&
	    (m = s->queue.head) != NULL) {
		const char *argv[3];
		size_t argvlen[3];
		const struct buf *body = &m->body;
		double wait = m->queued_at + s->o.coalesce - ev_now(s->loop);

		/* Held for the coalescing window, unless already full. */
		if (m->op != NULL && wait > 0 &&
		    m->keys.n < (size_t)s->o.max_keys) {
			ev_timer_stop(s->loop, &s->hold);
			ev_timer_set(&s->hold, wait, 0);
			ev_timer_start(s->loop, &s->hold);
			break;
		}
		list_pop(&s->queue);
		if (m->op != NULL) {
			buf_reset(&s->body);
			message_body_rows(&s->body, m->op, m->table, &m->keys,
			    m->ts, m->rows.data, m->rows.len, m->nrows);
			body = &s->body;
			m->nkeys = m->keys.n;
		}
		if (s->o.delete_keys) {
			/* Remove first, announce second: a subscriber that
			 * refills on the message must not race the UNLINK. */
			for (size_t i = 0; m->op != NULL && i < m->keys.n; i += 512)
				redis_sink_unlink(s, &m->keys, i,
				    m->keys.n - i < 512 ? m->keys.n - i : 512);
			redis_sink_add_scans(s, &m->patterns);
		}
		buf_reset(&s->frame);
		message_frame(&s->frame, s->seq + 1, s->epoch, body->data,
		    body->len);
		argv[0] = "PUBLISH";
		argvlen[0] = 7;
		argv[1] = s->channel;
		argvlen[1] = strlen(s->channel);
		argv[2] = s->frame.data;
		argvlen[2] = s->frame.len;
		if (redisAsyncCommandArgv(s->ac, redis_sink_publish_cb, NULL, 3,
		    argv, argvlen) != REDIS_OK) {
			/* Only while disconnecting; it will be requeued. */
			list_push(&s->requeue, m);
			break;
		}
		s->seq++;
		redis_sink_sent(s);
		list_push(&s->inflight, m);
	}
}

static void
redis_sink_kick_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	ev_prepare_stop(loop, w);
	redis_sink_pump(w->data);
}

static void
redis_sink_hold_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	redis_sink_pump(w->data);
}

/* Fine enough to honour both timeouts to within a quarter. */
static double
redis_sink_tick_interval(const struct redis_sink *s)
{
	double t = s->o.command_timeout / 4;

	if (s->o.health_interval > 0 && s->o.health_interval / 2 < t)
		t = s->o.health_interval / 2;
	return t < 1 ? t : 1;
}

static void
redis_sink_ready(struct redis_sink *s)
{
	redis_sink_set_state(s, REDIS_STATE_READY);
	backoff_reset(&s->backoff);
	if (s->ever_ready)
		s->stats->redis_reconnects++;
	s->ever_ready = true;
	log_info("redis: connected to %s, publishing on \"%s\"", s->where,
	    s->channel);
	ev_timer_set(&s->tick, redis_sink_tick_interval(s),
	    redis_sink_tick_interval(s));
	ev_timer_start(s->loop, &s->tick);
	s->cb(s->arg, REDIS_EVENT_READY);
	redis_sink_scans_resume(s);
	redis_sink_kick(s);
}

/* Names passed as privdata, for the handshake's error messages. */
static char cmd_auth[] = "AUTH", cmd_select[] = "SELECT",
    cmd_setname[] = "CLIENT SETNAME";

static void
redis_sink_handshake_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct redis_sink *s = ac->data;
	redisReply *reply = r;

	if (reply == NULL)
		return;
	redis_sink_replied(s);
	if (s->handshake <= 0)
		return;	/* an earlier step failed; disconnecting */
	if (reply->type == REDIS_REPLY_ERROR && privdata == cmd_setname) {
		/* Only a convenience: an ACL may forbid it. */
		log_debug("redis: CLIENT SETNAME refused: %s", reply->str);
	} else if (reply->type == REDIS_REPLY_ERROR) {
		log_error("redis: %s failed on %s: %s", (const char *)privdata,
		    s->where, reply->str);
		/* Allowed from a reply callback; the disconnect callback
		 * then schedules the retry. */
		s->handshake = 0;
		redisAsyncDisconnect(ac);
		return;
	}
	if (--s->handshake == 0)
		redis_sink_ready(s);
}

/* Sends one command that must succeed before the connection is READY. */
static void
redis_sink_handshake(struct redis_sink *s, char *name, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = redisvAsyncCommand(s->ac, redis_sink_handshake_cb, name, fmt, ap);
	va_end(ap);
	if (rc == REDIS_OK) {
		s->handshake++;
		redis_sink_sent(s);
	}
}

static void
redis_sink_connect_cb(const redisAsyncContext *ac, int status)
{
	struct redis_sink *s = ac->data;

	if (s == NULL || s->ac != ac)
		return;
	if (status != REDIS_OK) {
		char why[256];

		snprintf(why, sizeof(why), "cannot connect: %s", ac->errstr);
		s->ac = NULL;	/* hiredis frees it after we return */
		redis_sink_lost(s, why);
		return;
	}
	ev_timer_stop(s->loop, &s->timer);
	s->handshake = 0;
	redis_sink_set_state(s, REDIS_STATE_HANDSHAKE);
	if (s->password != NULL && s->user != NULL)
		redis_sink_handshake(s, cmd_auth, "AUTH %s %s", s->user,
		    s->password);
	else if (s->password != NULL)
		redis_sink_handshake(s, cmd_auth, "AUTH %s", s->password);
	if (s->o.db != 0)
		redis_sink_handshake(s, cmd_select, "SELECT %d", s->o.db);
	/* Named, so that operators can tell it apart in CLIENT LIST. */
	redis_sink_handshake(s, cmd_setname, "CLIENT SETNAME pginval");
	if (s->handshake == 0)
		redis_sink_ready(s);
	else
		ev_timer_start(s->loop, &s->tick);
}

static void
redis_sink_disconnect_cb(const redisAsyncContext *ac, int status)
{
	struct redis_sink *s = ac->data;
	char why[256];

	if (s == NULL || s->ac != ac)
		return;	/* we freed it ourselves */
	snprintf(why, sizeof(why), "connection lost: %s",
	    status == REDIS_OK ? "closed" : ac->errstr);
	s->ac = NULL;	/* hiredis frees it after we return */
	redis_sink_lost(s, why);
}

static void
redis_sink_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct redis_sink *s = w->data;

	if (s->state == REDIS_STATE_BACKOFF)
		redis_sink_connect(s);
	else if (s->state == REDIS_STATE_CONNECTING)
		redis_sink_drop(s, "timed out connecting");
}

static void
redis_sink_ping_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	if (r != NULL)
		redis_sink_replied(ac->data);
}

static void
redis_sink_tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct redis_sink *s = w->data;

	/* An idle link is proved alive with a PING, so that a dead one is
	 * found by the command timeout below, not by the next message. */
	if (s->state == REDIS_STATE_READY && s->outstanding == 0 &&
	    s->o.health_interval > 0 &&
	    ev_now(loop) - s->progress_at >= s->o.health_interval &&
	    redisAsyncCommand(s->ac, redis_sink_ping_cb, NULL, "PING") ==
	    REDIS_OK)
		redis_sink_sent(s);

	if (s->ac != NULL && s->outstanding > 0 &&
	    ev_now(loop) - s->progress_at > s->o.command_timeout) {
		char why[96];

		snprintf(why, sizeof(why), "no reply for %.1fs",
		    ev_now(loop) - s->progress_at);
		redis_sink_drop(s, why);
	}
}

static void
redis_sink_connect(struct redis_sink *s)
{
	redisAsyncContext *ac;

	redis_sink_set_state(s, REDIS_STATE_CONNECTING);
	/* Note: a host name is resolved with a blocking getaddrinfo. */
	ac = s->host != NULL ? redisAsyncConnect(s->host, s->o.port) :
	    redisAsyncConnectUnix(s->unix_path);
	if (ac == NULL || ac->err) {
		char why[256];

		snprintf(why, sizeof(why), "cannot connect: %s",
		    ac ? ac->errstr : "out of memory");
		if (ac != NULL)
			redisAsyncFree(ac);
		redis_sink_lost(s, why);
		return;
	}
	ac->data = s;
	s->ac = ac;
	if (redisLibevAttach(s->loop, ac) != REDIS_OK) {
		redis_sink_drop(s, "cannot attach to the event loop");
		return;
	}
	redisAsyncSetConnectCallback(ac, redis_sink_connect_cb);
	redisAsyncSetDisconnectCallback(ac, redis_sink_disconnect_cb);
	ev_timer_set(&s->timer, s->o.connect_timeout, 0);
	ev_timer_start(s->loop, &s->timer);
}

static char *
dup_or_null(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

struct redis_sink *
redis_sink_new(struct ev_loop *loop, const struct redis_sink_opts *opts,
    redis_sink_cb *cb, void *arg)
{
	struct redis_sink *s = xcalloc(1, sizeof(*s));

	s->loop = loop;
	s->cb = cb;
	s->arg = arg;
	s->o = *opts;
	s->o.host = s->o.unix_path = s->o.user = s->o.password = NULL;
	s->o.where = s->o.epoch = s->o.channel = NULL;
	s->o.stats = NULL;
	s->stats = opts->stats;
	s->host = dup_or_null(opts->host);
	s->unix_path = dup_or_null(opts->unix_path);
	s->user = dup_or_null(opts->user);
	s->password = dup_or_null(opts->password);
	s->where = xstrdup(opts->where);
	s->epoch = xstrdup(opts->epoch);
	s->channel = xstrdup(opts->channel);
	s->backoff.min = opts->reconnect_min;
	s->backoff.max = opts->reconnect_max;
	ev_timer_init(&s->timer, redis_sink_timer_cb, 0, 0);
	s->timer.data = s;
	ev_timer_init(&s->tick, redis_sink_tick_cb, 1, 1);
	s->tick.data = s;
	ev_prepare_init(&s->kick, redis_sink_kick_cb);
	s->kick.data = s;
	ev_timer_init(&s->hold, redis_sink_hold_cb, 0, 0);
	s->hold.data = s;
	return s;
}

void
redis_sink_start(struct redis_sink *s)
{
	if (s->state == REDIS_STATE_STOPPED)
		redis_sink_connect(s);
}

void
redis_sink_free(struct redis_sink *s)
{
	struct scan_job *j;

	if (s == NULL)
		return;
	redis_sink_set_state(s, REDIS_STATE_STOPPED);
	if (s->ac != NULL) {
		redisAsyncContext *ac = s->ac;

		s->ac = NULL;
		redisAsyncFree(ac);
	}
	ev_timer_stop(s->loop, &s->timer);
	ev_timer_stop(s->loop, &s->tick);
	ev_timer_stop(s->loop, &s->hold);
	ev_prepare_stop(s->loop, &s->kick);
	list_free(&s->queue);
	list_free(&s->inflight);
	list_free(&s->requeue);
	while ((j = s->scans) != NULL) {
		s->scans = j->next;
		free(j->pattern);
		free(j);
	}
	buf_free(&s->frame);
	buf_free(&s->body);
	free(s->host);
	free(s->unix_path);
	free(s->user);
	free(s->password);
	free(s->where);
	free(s->epoch);
	free(s->channel);
	free(s);
}

void
redis_sink_push(struct redis_sink *s, struct sink_msg *m)
{
	m->queued_at = ev_now(s->loop);
	if (m->on_ack != NULL && m->nacks == 0)
		m->nacks = 1;
	if (s->queue.tail != NULL && redis_sink_mergeable(s, s->queue.tail, m)) {
		size_t before = sink_msg_size(s->queue.tail);

		redis_sink_merge(s->queue.tail, m);
		s->bytes += sink_msg_size(s->queue.tail) - before;
	} else {
		s->bytes += sink_msg_size(m);
		list_push(&s->queue, m);
	}
	redis_sink_kick(s);
}

size_t
redis_sink_drop_queued(struct redis_sink *s)
{
	struct msg_list keep = { 0 };
	struct sink_msg *m;
	size_t n = 0;

	while ((m = list_pop(&s->queue)) != NULL) {
		if (m->on_ack != NULL) {
			list_push(&keep, m);
		} else {
			redis_sink_release(s, m);
			n++;
		}
	}
	s->queue = keep;
	return n;
}

static void
replace_str(char **field, const char *v)
{
	free(*field);
	*field = dup_or_null(v);
}

bool
redis_sink_configure(struct redis_sink *s, const struct redis_sink_opts *o)
{
	bool moved = str_differs(s->host, o->host) ||
	    str_differs(s->unix_path, o->unix_path) || s->o.port != o->port ||
	    str_differs(s->user, o->user) ||
	    str_differs(s->password, o->password) || s->o.db != o->db;

	replace_str(&s->host, o->host);
	replace_str(&s->unix_path, o->unix_path);
	replace_str(&s->user, o->user);
	replace_str(&s->password, o->password);
	replace_str(&s->where, o->where);
	replace_str(&s->channel, o->channel);
	s->o.port = o->port;
	s->o.db = o->db;
	s->o.delete_keys = o->delete_keys;
	s->o.max_inflight = o->max_inflight;
	s->o.connect_timeout = o->connect_timeout;
	s->o.command_timeout = o->command_timeout;
	s->o.health_interval = o->health_interval;
	s->o.max_keys = o->max_keys;
	s->o.coalesce = o->coalesce;
	s->backoff.min = s->o.reconnect_min = o->reconnect_min;
	s->backoff.max = s->o.reconnect_max = o->reconnect_max;
	if (!moved || s->state == REDIS_STATE_STOPPED)
		return false;
	backoff_reset(&s->backoff);
	if (s->ac != NULL || s->state == REDIS_STATE_CONNECTING)
		redis_sink_drop(s, "settings changed; reconnecting");
	/* In backoff, the next attempt uses the new settings anyway. */
	redis_sink_kick(s);
	return true;
}

size_t
redis_sink_bytes(const struct redis_sink *s)
{
	return s->bytes;
}

size_t
redis_sink_queued(const struct redis_sink *s)
{
	return s->queue.n + s->requeue.n;
}

size_t
redis_sink_inflight(const struct redis_sink *s)
{
	return s->inflight.n;
}

enum redis_state
redis_sink_state(const struct redis_sink *s)
{
	return s->state;
}

uint64_t
redis_sink_seq(const struct redis_sink *s)
{
	return s->seq;
}
