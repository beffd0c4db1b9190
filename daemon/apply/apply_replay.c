/*
 * Replay from the stream. One request is in flight at a time: XREVRANGE
 * pages while searching back for the last handled message, then XRANGE
 * pages forward from its entry. The cursor is the ID of the last entry
 * read, so each page starts just past it (an exclusive "(" range).
 */
#include "apply/apply_replay.h"
#include "lib/buf.h"
#include "lib/fifo.h"
#include "lib/log.h"
#include "core/message.h"
#include "lib/redis_conn.h"
#include "lib/redis_router.h"
#include "lib/redis_slots.h"
#include "lib/xalloc.h"

#include <ev.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPLAY_PAGE 100
#define REPLAY_PAGE_STR "100"
#define REPLAY_PAUSE 0.01	/* seconds between checks while busy */

enum replay_state {
	REPLAY_IDLE,
	REPLAY_WAITING,		/* for the connection */
	REPLAY_SEARCHING,	/* back from the end for (epoch, seq) */
	REPLAY_READING,		/* forward from its entry */
};

struct held {
	struct fifo_node node;	/* first */
	size_t len;
	char payload[];
};

struct apply_replay {
	struct ev_loop *loop;
	apply_replay_cb *cb;
	void *arg;
	apply_replay_busy_fn *busy;
	char *stream;
	int slot;		/* the stream's */
	struct redis_router *router;	/* follows the stream in a cluster */
	double wait;		/* for the connection, at most */
	enum replay_state state;
	struct message_seq from;	/* the last handled message */
	struct message msg;	/* the entry read last */
	char cursor[64];	/* ID of the last entry read; "" at first */
	bool again;		/* read the end again: it moved since */
	uintptr_t gen;		/* of the replay; its requests carry it */
	size_t replayed;	/* entries handed over by this replay */
	ev_timer timer;		/* WAITING: deadline; READING: pause */
	struct fifo held;
	size_t held_bytes;
};

static void replay_next(struct apply_replay *r);

static void
replay_fail(struct apply_replay *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
replay_fail(struct apply_replay *r, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	r->state = REPLAY_IDLE;
	r->again = false;
	ev_timer_stop(r->loop, &r->timer);
	r->cb(r->arg, REPLAY_EVENT_FAILED, why, strlen(why));
}

/*
 * An entry is [id, [field, value, ...]]; its message is the value of the
 * field "message". Moves the cursor to it and returns true, msg NULL when
 * it holds no message; fails the replay when it is not such an entry.
 */
static bool
replay_entry(struct apply_replay *r, const redisReply *e,
    const redisReply **msg)
{
	const redisReply *f;

	if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
	    e->element[0]->type != REDIS_REPLY_STRING ||
	    e->element[0]->len >= sizeof(r->cursor) ||
	    e->element[1]->type != REDIS_REPLY_ARRAY) {
		replay_fail(r, "stream \"%s\" holds an entry that is not a "
		    "stream entry", r->stream);
		return false;
	}
	memcpy(r->cursor, e->element[0]->str, e->element[0]->len + 1);
	*msg = NULL;
	f = e->element[1];
	for (size_t i = 0; i + 1 < f->elements; i += 2)
		if (f->element[i]->type == REDIS_REPLY_STRING &&
		    strcmp(f->element[i]->str, "message") == 0 &&
		    f->element[i + 1]->type == REDIS_REPLY_STRING)
			*msg = f->element[i + 1];
	return true;
}

/* -1: the entry is older than the one searched for; 1: it is that one;
 * 0: neither (newer, another epoch, or not a message). By the gap rules,
 * the first two are repeats of the last handled message. */
static int
replay_compare(struct apply_replay *r, const redisReply *msg)
{
	struct message *m = &r->msg;
	char err[64];

	if (message_parse(m, msg->str, msg->len, err, sizeof(err)) == -1 ||
	    !message_has_seq(m) ||
	    message_seq_test(&r->from, m->epoch, m->seq) != MESSAGE_GAP_REPEAT)
		return 0;
	return m->seq == r->from.last ? 1 : -1;
}

static void
replay_search_page(struct apply_replay *r, const redisReply *reply)
{
	for (size_t i = 0; i < reply->elements; i++) {
		const redisReply *msg;
		int c;

		if (!replay_entry(r, reply->element[i], &msg))
			return;
		c = msg ? replay_compare(r, msg) : 0;
		if (c == 1) {
			r->state = REPLAY_READING;
			replay_next(r);
			return;
		}
		if (c == -1) {
			replay_fail(r, "stream \"%s\" lacks message %llu of epoch "
			    "%s (an XADD failed?)", r->stream,
			    (unsigned long long)r->from.last, r->from.epoch);
			return;
		}
	}
	if (reply->elements < REPLAY_PAGE) {
		replay_fail(r, "message %llu of epoch %s is older than stream "
		    "\"%s\" holds (raise [redis] stream_maxlen to replay "
		    "longer gaps)", (unsigned long long)r->from.last,
		    r->from.epoch, r->stream);
		return;
	}
	replay_next(r);
}

static void
replay_read_page(struct apply_replay *r, const redisReply *reply)
{
	for (size_t i = 0; i < reply->elements; i++) {
		const redisReply *msg;

		if (!replay_entry(r, reply->element[i], &msg))
			return;
		if (msg == NULL)
			continue;
		r->replayed++;
		if (!r->cb(r->arg, REPLAY_EVENT_ENTRY, msg->str,
		    msg->len)) {
			replay_fail(r, "stream \"%s\" misses messages itself: "
			    "entry %s does not follow the one before", r->stream,
			    r->cursor);
			return;
		}
	}
	if (reply->elements < REPLAY_PAGE && !r->again) {
		r->state = REPLAY_IDLE;
		r->cb(r->arg, REPLAY_EVENT_DONE, NULL, r->replayed);
		return;
	}
	replay_next(r);
}

static void
replay_reply_cb(void *arg, redisReply *reply, void *privdata)
{
	struct apply_replay *r = arg;

	if (reply == NULL || r->state == REPLAY_IDLE ||
	    (uintptr_t)privdata != r->gen)
		return;	/* a lost link (CLOSED follows), or a cancelled replay */
	if (reply->type == REDIS_REPLY_ERROR) {
		replay_fail(r, "reading stream \"%s\" failed: %s", r->stream,
		    reply->str);
	} else if (reply->type != REDIS_REPLY_ARRAY) {
		replay_fail(r, "reading stream \"%s\": not an array of "
		    "entries; is it a stream?", r->stream);
	} else if (r->state == REPLAY_SEARCHING) {
		replay_search_page(r, reply);
	} else {
		replay_read_page(r, reply);
	}
}

/* Asks for the next page, unless the targets need a pause first. */
static void
replay_next(struct apply_replay *r)
{
	char from[72];
	const char *argv[6];
	bool back = r->state == REPLAY_SEARCHING;

	if (!back && r->busy(r->arg)) {
		ev_timer_stop(r->loop, &r->timer);
		ev_timer_set(&r->timer, REPLAY_PAUSE, 0);
		ev_timer_start(r->loop, &r->timer);
		return;
	}
	if (r->cursor[0] == '\0')
		snprintf(from, sizeof(from), "%s", back ? "+" : "-");
	else
		snprintf(from, sizeof(from), "(%s", r->cursor);
	argv[0] = back ? "XREVRANGE" : "XRANGE";
	argv[1] = r->stream;
	argv[2] = from;
	argv[3] = back ? "-" : "+";
	argv[4] = "COUNT";
	argv[5] = REPLAY_PAGE_STR;
	if (!back)
		r->again = false;	/* this read sees the end as it is now */
	redis_router_command(r->router, r->slot, NULL, replay_reply_cb,
	    (void *)r->gen, 6, argv, NULL);
}

/* The link to the stream's node, once ready; else NULL. */
static struct redis_conn *
replay_conn(const struct apply_replay *r)
{
	struct redis_router_node *n = redis_router_slot_node(r->router,
	    r->slot);

	return n != NULL && redis_conn_ready(redis_router_conn(n)) ?
	    redis_router_conn(n) : NULL;
}

static void
replay_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct apply_replay *r = w->data;

	if (r->state == REPLAY_WAITING)
		replay_fail(r, "no connection to the stream's Redis within "
		    "%.1f s", r->wait);
	else if (r->state == REPLAY_READING)
		replay_next(r);
}

static void
replay_node_cb(void *arg, enum redis_router_event ev,
    struct redis_router_node *n)
{
	struct apply_replay *r = arg;

	switch (ev) {
	case ROUTER_NODE_READY:
	case ROUTER_MAP:
		if (r->state == REPLAY_WAITING && replay_conn(r) != NULL) {
			ev_timer_stop(r->loop, &r->timer);
			r->state = REPLAY_SEARCHING;
			replay_next(r);
		}
		break;
	case ROUTER_NODE_CLOSED:
		/* What the node had not answered comes back later with an
		 * old generation, and is ignored. */
		if ((r->state == REPLAY_SEARCHING ||
		    r->state == REPLAY_READING) &&
		    n == redis_router_slot_node(r->router, r->slot))
			replay_fail(r, "lost the link to %s",
			    redis_router_where(n));
		break;
	case ROUTER_NODE_NEW:
	case ROUTER_NODE_HANDSHAKE:
	case ROUTER_NODE_LOST:
	case ROUTER_NODE_GONE:
	case ROUTER_NODE_FORGOT:	/* only links that write */
		break;
	}
}

struct apply_replay *
apply_replay_new(struct ev_loop *loop, const struct redis_conn_opts *conn,
    const char *stream, apply_replay_busy_fn *busy, apply_replay_cb *cb,
    void *arg)
{
	struct apply_replay *r = xcalloc(1, sizeof(*r));
	struct redis_conn_opts co = *conn;

	co.name = "stream";
	r->loop = loop;
	r->cb = cb;
	r->arg = arg;
	r->busy = busy;
	r->stream = xstrdup(stream);
	r->slot = (int)redis_keyslot(stream, strlen(stream));
	r->wait = conn->connect_timeout;
	r->router = redis_router_new(loop, &co, replay_node_cb, r);
	ev_timer_init(&r->timer, replay_timer_cb, 0, 0);
	r->timer.data = r;
	return r;
}

void
apply_replay_start(struct apply_replay *r)
{
	redis_router_start(r->router);
}

void
apply_replay_free(struct apply_replay *r)
{
	if (r == NULL)
		return;
	r->state = REPLAY_IDLE;
	redis_router_free(r->router);
	ev_timer_stop(r->loop, &r->timer);
	apply_replay_drop_held(r);
	message_free(&r->msg);
	free(r->stream);
	free(r);
}

void
apply_replay_from(struct apply_replay *r, const char *epoch, uint64_t seq)
{
	if (r->state != REPLAY_IDLE) {
		r->again = true;
		return;
	}
	snprintf(r->from.epoch, sizeof(r->from.epoch), "%s", epoch);
	r->from.last = seq;
	r->cursor[0] = '\0';
	r->again = false;
	r->gen++;
	r->replayed = 0;
	if (replay_conn(r) != NULL) {
		r->state = REPLAY_SEARCHING;
		replay_next(r);
		return;
	}
	r->state = REPLAY_WAITING;
	ev_timer_set(&r->timer, r->wait, 0);
	ev_timer_start(r->loop, &r->timer);
}

bool
apply_replay_running(const struct apply_replay *r)
{
	return r->state != REPLAY_IDLE;
}

void
apply_replay_cancel(struct apply_replay *r)
{
	r->state = REPLAY_IDLE;
	r->again = false;
	ev_timer_stop(r->loop, &r->timer);
	apply_replay_drop_held(r);
}

bool
apply_replay_hold(struct apply_replay *r, const char *payload, size_t len)
{
	struct held *h;

	if (r->held.n >= REPLAY_MAX_HELD ||
	    r->held_bytes + len > REPLAY_MAX_HELD_BYTES)
		return false;
	h = xmalloc(sizeof(*h) + len);
	h->len = len;
	memcpy(h->payload, payload, len);
	fifo_push(&r->held, &h->node);
	r->held_bytes += len;
	return true;
}

const char *
apply_replay_held(const struct apply_replay *r, size_t *len)
{
	const struct held *h = (const struct held *)r->held.head;

	if (h == NULL)
		return NULL;
	*len = h->len;
	return h->payload;
}

void
apply_replay_pop(struct apply_replay *r)
{
	struct held *h = (struct held *)fifo_pop(&r->held);

	if (h != NULL) {
		r->held_bytes -= h->len;
		free(h);
	}
}

void
apply_replay_drop_held(struct apply_replay *r)
{
	while (r->held.n > 0)
		apply_replay_pop(r);
}
