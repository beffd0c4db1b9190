/*
 * The channel subscription of pginval apply, on a redis_conn in
 * subscriber mode. Connect, AUTH when needed, then SUBSCRIBE; hiredis
 * calls the subscribe callback for the confirmation and then for every
 * message, and once more with a NULL reply when the link drops. A
 * subscribed link is silent when idle, and hiredis 0.14 cannot PING on
 * it, so TCP keepalive (with TCP_USER_TIMEOUT) is what finds a peer that
 * vanished, and the connect timeout lasts until the confirmation.
 */
#include "apply/apply_sub.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/redis_conn.h"
#include "lib/xalloc.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

struct apply_sub {
	apply_sub_cb *cb;
	void *arg;
	char *channel;
	struct redis_conn *conn;	/* in subscriber mode */
	bool subscribed;		/* Redis confirmed the subscription */
};

static void
sub_message_cb(void *arg, redisReply *reply, void *privdata)
{
	struct apply_sub *s = arg;
	const char *kind;

	if (reply == NULL)
		return;	/* the link is going; the loss is reported next */
	if (reply->type == REDIS_REPLY_ERROR) {
		log_error("channel: SUBSCRIBE failed on %s: %s",
		    redis_conn_where(s->conn), reply->str);
		redis_conn_disconnect(s->conn);
		return;
	}
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
	    reply->element[0]->type != REDIS_REPLY_STRING)
		return;
	kind = reply->element[0]->str;
	if (strcmp(kind, "subscribe") == 0) {
		s->subscribed = true;
		log_info("channel: subscribed to \"%s\" on %s", s->channel,
		    redis_conn_where(s->conn));
		s->cb(s->arg, SUB_EVENT_SUBSCRIBED, NULL, 0);
	} else if (strcmp(kind, "message") == 0 &&
	    reply->element[2]->type == REDIS_REPLY_STRING) {
		s->cb(s->arg, SUB_EVENT_MESSAGE, reply->element[2]->str,
		    reply->element[2]->len);
	}
}

static void
sub_conn_cb(void *arg, enum redis_conn_event ev)
{
	struct apply_sub *s = arg;
	const char *argv[] = { "SUBSCRIBE", s->channel };

	switch (ev) {
	case REDIS_CONN_EVENT_HANDSHAKE:
	case REDIS_CONN_EVENT_CLOSED:
	case REDIS_CONN_EVENT_FORGOT:	/* only links that write */
		break;
	case REDIS_CONN_EVENT_READY:
		/* If it cannot be sent, the connect timeout, which lasts
		 * until the confirmation, drops the link. */
		if (redis_conn_command(s->conn, sub_message_cb, NULL, 2, argv,
		    NULL) == -1)
			log_warnx("channel: cannot send SUBSCRIBE to %s",
			    redis_conn_where(s->conn));
		break;
	case REDIS_CONN_EVENT_LOST:
		if (s->subscribed) {
			s->subscribed = false;
			s->cb(s->arg, SUB_EVENT_LOST, NULL, 0);
		}
		break;
	}
}

struct apply_sub *
apply_sub_new(struct ev_loop *loop, const struct redis_conn_opts *conn,
    const char *channel, apply_sub_cb *cb, void *arg)
{
	struct apply_sub *s = xcalloc(1, sizeof(*s));
	struct redis_conn_opts co = *conn;

	co.name = "channel";
	co.subscriber = true;
	s->cb = cb;
	s->arg = arg;
	s->channel = xstrdup(channel);
	s->conn = redis_conn_new(loop, &co, sub_conn_cb, s);
	return s;
}

void
apply_sub_start(struct apply_sub *s)
{
	redis_conn_start(s->conn);
}

void
apply_sub_free(struct apply_sub *s)
{
	if (s == NULL)
		return;
	redis_conn_free(s->conn);
	free(s->channel);
	free(s);
}

bool
apply_sub_subscribed(const struct apply_sub *s)
{
	return s->subscribed && redis_conn_state(s->conn) == REDIS_STATE_READY;
}

/* The connection's states, with the subscription's in place of READY. */
const char *
apply_sub_state_name(const struct apply_sub *s)
{
	enum redis_state st = redis_conn_state(s->conn);

	if (st == REDIS_STATE_HANDSHAKE)
		return "auth";
	if (st == REDIS_STATE_READY)
		return s->subscribed ? "subscribed" : "subscribing";
	return redis_state_name(st);
}

unsigned long
apply_sub_reconnects(const struct apply_sub *s)
{
	return redis_conn_reconnects(s->conn);
}
