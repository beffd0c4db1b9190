/*
 * Redis sink. Commands are pipelined on the link of the master that
 * serves the channel (one server, or in a cluster the master of the
 * channel's slot; a redis_router keeps the links, their handshakes,
 * timeouts and reconnects): each queued message becomes an optional
 * UNLINK, an optional XADD and a PUBLISH (SPUBLISH in a cluster), and
 * moves to the in-flight list until the PUBLISH's reply arrives. hiredis
 * 0.14 has an unbounded output buffer, so the window is capped
 * (max_inflight).
 *
 * When the link drops, pending replies arrive as NULL, which is how
 * in-flight messages find their way back to the queue, in order; a
 * redirect sends them back the same way.
 */
#include "run/redis_sink.h"
#include "run/sink_int.h"
#include "lib/buf.h"
#include "lib/fifo.h"
#include "lib/log.h"
#include "core/message.h"
#include "lib/redis_slots.h"
#include "lib/redis_sweep.h"
#include "lib/xalloc.h"

#include <ev.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>



/* Messages are linked through their first member (struct sink_msg). */
static struct sink_msg *
list_pop(struct fifo *l)
{
	return (struct sink_msg *)fifo_pop(l);
}

static struct sink_msg *
list_first(const struct fifo *l)
{
	return (struct sink_msg *)l->head;
}

static struct sink_msg *
list_last(const struct fifo *l)
{
	return (struct sink_msg *)l->tail;
}

static void
list_free(struct fifo *l)
{
	struct sink_msg *m;

	while ((m = list_pop(l)) != NULL)
		sink_msg_free(m);
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

static void
redis_sink_maybe_idle(struct redis_sink *s)
{
	if (s->queue.n == 0 && s->inflight.n == 0 && s->requeue.n == 0)
		s->cb(s->arg, REDIS_EVENT_IDLE, NULL, NULL);
}

/* An error reply that Redis gives to a command it cannot read, after
 * which it closes the link: the message itself is the cause. */
bool
redis_sink_unreadable(const redisReply *reply)
{
	return reply->type == REDIS_REPLY_ERROR &&
	    strncmp(reply->str, "ERR Protocol error", 18) == 0;
}

/* The message whose commands are being answered: the first in flight,
 * since the replies to the messages sent before it came first. */
void
redis_sink_refused(struct redis_sink *s, const char *what, const char *err)
{
	struct sink_msg *m = list_first(&s->inflight);

	if (m == NULL)
		return;
	m->refused = true;
	snprintf(s->refusal, sizeof(s->refusal), "%s: %s", what, err);
}

/*
 * Counts a refusal of m, which is no longer in any list. True if m goes
 * back to be sent again; false if it was given up (and freed): the owner
 * has replaced it.
 */
static bool
redis_sink_retry(struct redis_sink *s, struct sink_msg *m)
{
	m->refused = false;
	if (++m->refusals < REDIS_SINK_REFUSALS) {
		if (log_limit(&s->refusal_lines, ev_now(s->loop),
		    "refused messages"))
			log_error("redis: a message of %zu bytes was refused "
			    "(%s); sending it again (%u of %d)", m->body.len +
			    m->rows.len + m->keys.data.len, s->refusal,
			    m->refusals, REDIS_SINK_REFUSALS);
		return true;
	}
	s->stats->replaced++;
	s->cb(s->arg, REDIS_EVENT_REFUSED, m, s->refusal);
	redis_sink_release(s, m);
	return false;
}

static void
redis_sink_publish_cb(void *arg, redisReply *reply, void *privdata)
{
	struct redis_sink *s = privdata;
	struct sink_msg *m = list_pop(&s->inflight);
	bool redirect = reply != NULL && reply->type == REDIS_REPLY_ERROR &&
	    sink_redirected(s, arg, reply);

	if (redirect)
		s->redirected++;
	else if (s->redirected > 0)
		s->redirect_mixed = true;
	if (reply == NULL || redirect) {
		/* The link dropped before the reply, or the channel is
		 * elsewhere: send it again later, unless it was refused once
		 * too often. */
		if (m != NULL && (!m->refused || redis_sink_retry(s, m)))
			fifo_push(&s->requeue, &m->node);
		return;
	}
	if (m != NULL && m->on_ack != NULL && reply->type != REDIS_REPLY_ERROR)
		for (unsigned i = 0; i < m->nacks; i++)
			m->on_ack(m->ack_arg);
	if (reply->type == REDIS_REPLY_ERROR) {
		/* Sent again first, in its place; a durable message is
		 * acknowledged only by what is delivered in the end. */
		struct fifo again = { 0 };

		s->stats->refused++;
		if (m != NULL) {
			m->refused = true;
			snprintf(s->refusal, sizeof(s->refusal), "PUBLISH: %s",
			    reply->str);
			if (redis_sink_retry(s, m)) {
				fifo_push(&again, &m->node);
				fifo_prepend(&s->queue, &again);
			}
		}
	} else if (m != NULL) {
		struct timespec now;

		clock_gettime(CLOCK_REALTIME, &now);
		s->stats->published++;
		s->stats->keys_published += m->keys.n;
		if (m->ts > 0)
			hist_observe(&s->stats->lag, ((double)now.tv_sec * 1e6 +
			    now.tv_nsec / 1e3 - (double)m->ts) / 1e6);
		redis_sink_release(s, m);
	}
	redis_sink_kick(s);
	redis_sink_maybe_idle(s);
}

/* m as sent with seq, into s->frame. A row message's body is encoded
 * there, after the envelope, not copied. */
static void
redis_sink_frame(struct redis_sink *s, const struct sink_msg *m, uint64_t seq)
{
	buf_reset(&s->frame);
	if (m->op == NULL) {
		message_frame(&s->frame, seq, s->epoch, m->body.data,
		    m->body.len);
		return;
	}
	/* Room for the usual case: keys escaped as they are, quoted. */
	buf_reserve(&s->frame, 256 + strlen(m->table) + m->rows.len +
	    m->keys.data.len + 3 * m->keys.n);
	message_envelope(&s->frame, seq, s->epoch);
	message_body_rows(&s->frame, m->op, m->table, &m->keys, m->ts,
	    m->rows.data, m->rows.len, m->nrows);
}

static int redis_sink_xadd(struct redis_sink *s, struct redis_conn *conn);

/* A stream that refuses entries costs subscribers their replays (they
 * reset instead), not invalidations: said at most once a minute. */
static void
redis_sink_xadd_cb(void *arg, redisReply *reply, void *privdata)
{
	struct redis_sink *s = privdata;

	enum redis_err_kind kind;
	struct sink_msg *m = list_first(&s->inflight);

	if (reply == NULL || reply->type != REDIS_REPLY_ERROR)
		return;
	kind = redis_err_classify(reply->str, reply->len, NULL);
	if (kind == REDIS_ERR_ASK && m != NULL) {
		/* The slot is moving and the stream moved already, but the
		 * channel is still served here: the PUBLISH goes out, so the
		 * entry follows the stream (the router sends ASKING). m is
		 * the message whose replies come now. */
		redis_sink_frame(s, m, s->seq - s->inflight.n + 1);
		redis_sink_xadd(s, NULL);
		return;
	}
	if (kind != REDIS_ERR_OTHER)
		return;	/* MOVED and the like: its PUBLISH gets one too */
	s->stats->stream_refused++;
	if (redis_sink_unreadable(reply)) {
		redis_sink_refused(s, "XADD", reply->str);
		return;
	}
	if (ev_now(s->loop) - s->stream_complained < 60 &&
	    s->stream_complained > 0)
		return;
	s->stream_complained = ev_now(s->loop);
	log_error("redis: XADD to stream \"%s\" refused: %s; messages are "
	    "still published, but subscribers that miss some will reset "
	    "instead of replaying them (check [redis] stream)",
	    s->stream ? s->stream : "", reply->str);
}

/* Appends s->frame to the stream: on conn, before the PUBLISH; or, with
 * conn NULL, through the router, to wherever the stream is. */
static int
redis_sink_xadd(struct redis_sink *s, struct redis_conn *conn)
{
	const char *argv[] = { "XADD", s->stream, "MAXLEN", "~", s->maxlen,
	    "*", "message", s->frame.data };
	size_t argvlen[8];

	for (size_t i = 0; i < 7; i++)
		argvlen[i] = strlen(argv[i]);
	argvlen[7] = s->frame.len;
	if (conn == NULL) {
		redis_router_command(s->router, (int)redis_keyslot(s->stream,
		    strlen(s->stream)), NULL, redis_sink_xadd_cb, s, 8, argv,
		    argvlen);
		return 0;
	}
	return redis_conn_command(conn, redis_sink_xadd_cb, s, 8, argv,
	    argvlen);
}

/* Merges m into the last queued message, if it can; true if it did. */
static bool
redis_sink_merge_last(struct redis_sink *s, const struct sink_msg *m)
{
	struct sink_msg *last = list_last(&s->queue);
	size_t before;

	if (last == NULL || !sink_msg_mergeable(last, m, (size_t)s->o.max_keys))
		return false;
	before = sink_msg_size(last);
	sink_msg_merge(last, m);
	s->bytes += sink_msg_size(last) - before;
	redis_sink_kick(s);
	return true;
}

void
redis_sink_kick(struct redis_sink *s)
{
	ev_prepare_start(s->loop, &s->kick);
}

/* Sends queued messages while the window has room. */
static void
redis_sink_pump(struct redis_sink *s)
{
	struct redis_router_node *n = redis_router_slot_node(s->router,
	    s->slot);
	struct redis_conn *conn = n ? redis_router_conn(n) : NULL;
	struct sink_msg *m;

	if (s->inflight.n == 0) {
		if (!s->redirect_mixed)
			s->seq -= s->redirected;
		s->redirected = 0;
		s->redirect_mixed = false;
		/* What came back (a lost link, a redirect) goes first. */
		s->stats->requeued += s->requeue.n;
		fifo_prepend(&s->queue, &s->requeue);
		s->sent_on = n;
	}
	/* Replies come in order on one link only: a new owner of the
	 * channel waits until the old one has answered. */
	if (n != s->sent_on)
		return;
	while (conn != NULL && redis_conn_ready(conn) &&
	    s->inflight.n < (size_t)s->o.max_inflight &&
	    (m = list_first(&s->queue)) != NULL) {
		const char *argv[3];
		size_t argvlen[3];
		double wait = m->queued_at + s->o.coalesce - ev_now(s->loop);

		/* The last message of a transaction still arriving is held:
		 * its next changes may merge into it. It goes when it is
		 * full, when something is queued after it, or at the
		 * commit. */
		if (s->held && m->op != NULL && &m->node == s->queue.tail &&
		    m->keys.n < (size_t)s->o.max_keys)
			break;
		/* Held for the coalescing window, unless already full. */
		if (m->op != NULL && wait > 0 &&
		    m->keys.n < (size_t)s->o.max_keys) {
			ev_timer_stop(s->loop, &s->hold);
			ev_timer_set(&s->hold, wait, 0);
			ev_timer_start(s->loop, &s->hold);
			break;
		}
		if (s->o.delete_keys) {
			int rc = sink_delete(s, m, conn);

			if (rc == 1)
				break;	/* its UNLINKs are awaited */
			if (rc == -1) {
				/* Only while disconnecting; it will be
				 * requeued. */
				list_pop(&s->queue);
				fifo_push(&s->requeue, &m->node);
				break;
			}
		}
		list_pop(&s->queue);
		redis_sink_frame(s, m, s->seq + 1);
		if (s->stream != NULL && redis_sink_xadd(s, conn) == -1) {
			fifo_push(&s->requeue, &m->node);
			break;
		}
		argv[0] = s->publish;
		argvlen[0] = strlen(s->publish);
		argv[1] = s->channel;
		argvlen[1] = strlen(s->channel);
		argv[2] = s->frame.data;
		argvlen[2] = s->frame.len;
		if (redis_conn_command(conn, redis_sink_publish_cb, s, 3,
		    argv, argvlen) == -1) {
			fifo_push(&s->requeue, &m->node);
			break;
		}
		s->seq++;
		fifo_push(&s->inflight, &m->node);
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

static void
redis_sink_set_stream(struct redis_sink *s, const struct redis_sink_opts *o)
{
	free(s->stream);
	s->stream = o->stream ? xstrdup(o->stream) : NULL;
	snprintf(s->maxlen, sizeof(s->maxlen), "%d", o->stream_maxlen);
}

static struct redis_conn_opts
redis_sink_conn_opts(struct redis_sink *s, const struct redis_sink_opts *o)
{
	struct redis_conn_opts co = {
		.name = "redis",
		.addr = o->addr, .client_name = "pginval",
		.connect_timeout = o->connect_timeout,
		.command_timeout = o->command_timeout,
		.health_interval = o->health_interval,
		.reconnect_min = o->reconnect_min,
		.reconnect_max = o->reconnect_max,
		.backlog = &s->queue.n, .backlog_unit = "messages",
		.writes = true,
	};

	return co;
}

struct redis_sink *
redis_sink_new(struct ev_loop *loop, const struct redis_sink_opts *opts,
    redis_sink_cb *cb, void *arg)
{
	struct redis_sink *s = xcalloc(1, sizeof(*s));
	struct redis_conn_opts co = redis_sink_conn_opts(s, opts);

	s->loop = loop;
	s->cb = cb;
	s->arg = arg;
	s->o = *opts;
	s->o.addr = NULL;
	s->o.epoch = s->o.channel = s->o.stream = NULL;
	s->o.stats = NULL;
	s->stats = opts->stats;
	s->epoch = xstrdup(opts->epoch);
	s->channel = xstrdup(opts->channel);
	redis_sink_set_stream(s, opts);
	s->slot = (int)redis_keyslot(s->channel, strlen(s->channel));
	s->publish = opts->addr->cluster == REDIS_CLUSTER_ON ? "SPUBLISH" :
	    "PUBLISH";
	s->router = redis_router_new(loop, &co, sink_node_cb, s);
	s->sweep = redis_sweep_new(loop, s->router, sink_delete_sweep_cb, s);
	ev_prepare_init(&s->kick, redis_sink_kick_cb);
	s->kick.data = s;
	ev_timer_init(&s->hold, redis_sink_hold_cb, 0, 0);
	s->hold.data = s;
	return s;
}

void
redis_sink_start(struct redis_sink *s)
{
	redis_router_start(s->router);
}

void
redis_sink_free(struct redis_sink *s)
{
	if (s == NULL)
		return;
	/* First: the replies it still awaits come back to the lists. */
	redis_router_free(s->router);
	s->router = NULL;
	ev_timer_stop(s->loop, &s->hold);
	ev_prepare_stop(s->loop, &s->kick);
	list_free(&s->queue);
	list_free(&s->inflight);
	list_free(&s->requeue);
	redis_sweep_free(s->sweep);
	buf_free(&s->frame);
	free(s->epoch);
	free(s->channel);
	free(s->stream);
	free(s);
}

void
redis_sink_push(struct redis_sink *s, struct sink_msg *m)
{
	m->queued_at = ev_now(s->loop);
	if (m->on_ack != NULL && m->nacks == 0)
		m->nacks = 1;
	if (redis_sink_merge_last(s, m)) {
		sink_msg_free(m);
		return;
	}
	s->bytes += sink_msg_size(m);
	fifo_push(&s->queue, &m->node);
	redis_sink_kick(s);
}

void
redis_sink_push_change(struct redis_sink *s, struct sink_msg *m)
{
	struct sink_msg *q;

	if (m->on_ack != NULL && m->nacks == 0)
		m->nacks = 1;
	if (redis_sink_merge_last(s, m))
		return;
	/* Its buffers move to a message of the queue's own. */
	q = sink_msg_new();
	*q = *m;
	q->node.next = NULL;
	q->table = xstrdup(m->table);
	memset(&m->keys, 0, sizeof(m->keys));
	memset(&m->rows, 0, sizeof(m->rows));
	redis_sink_push(s, q);
}

void
redis_sink_hold(struct redis_sink *s, bool hold)
{
	if (s->held && !hold)
		redis_sink_kick(s);
	s->held = hold;
}

size_t
redis_sink_drop_queued(struct redis_sink *s)
{
	struct fifo keep = { 0 };
	struct sink_msg *m;
	size_t n = 0;

	while ((m = list_pop(&s->queue)) != NULL) {
		/* Kept: acknowledged by the outbox, or awaited by UNLINKs. */
		if (m->on_ack != NULL || m->unlinking > 0) {
			fifo_push(&keep, &m->node);
		} else {
			redis_sink_release(s, m);
			n++;
		}
	}
	s->queue = keep;
	return n;
}

bool
redis_sink_configure(struct redis_sink *s, const struct redis_sink_opts *o)
{
	struct redis_conn_opts co = redis_sink_conn_opts(s, o);

	free(s->channel);
	s->channel = xstrdup(o->channel);
	redis_sink_set_stream(s, o);
	s->o.delete_keys = o->delete_keys;
	s->o.max_inflight = o->max_inflight;
	s->o.max_keys = o->max_keys;
	s->o.coalesce = o->coalesce;
	s->slot = (int)redis_keyslot(s->channel, strlen(s->channel));
	s->publish = o->addr->cluster == REDIS_CLUSTER_ON ? "SPUBLISH" :
	    "PUBLISH";
	if (!redis_router_configure(s->router, &co))
		return false;
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
	struct redis_router_node *n = redis_router_slot_node(s->router,
	    s->slot);

	return n != NULL ? redis_conn_state(redis_router_conn(n)) :
	    redis_router_state(s->router);
}

uint64_t
redis_sink_seq(const struct redis_sink *s)
{
	return s->seq;
}
