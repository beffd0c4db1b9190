/*
 * The channel subscription of pginval apply. Connect, AUTH when needed,
 * then SUBSCRIBE; hiredis calls the subscribe callback for the
 * confirmation and then for every message, and once more with a NULL
 * reply when the link drops. A subscribed link is silent when idle, and
 * hiredis 0.14 cannot PING on it, so TCP keepalive (with
 * TCP_USER_TIMEOUT) is what finds a peer that vanished.
 */
#include "apply_sub.h"
#include "backoff.h"
#include "buf.h"
#include "log.h"

#include <ev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

enum sub_state {
	SUB_STOPPED,
	SUB_CONNECTING,
	SUB_AUTH,		/* AUTH sent */
	SUB_SUBSCRIBING,	/* SUBSCRIBE sent */
	SUB_SUBSCRIBED,
	SUB_BACKOFF,
};

static const char *const sub_state_names[] = {
	[SUB_STOPPED] = "stopped", [SUB_CONNECTING] = "connecting",
	[SUB_AUTH] = "auth", [SUB_SUBSCRIBING] = "subscribing",
	[SUB_SUBSCRIBED] = "subscribed", [SUB_BACKOFF] = "backoff",
};

struct apply_sub {
	struct ev_loop *loop;
	apply_sub_cb *cb;
	void *arg;
	struct apply_sub_opts o;	/* numbers; strings are below */
	char *host, *unix_path, *user, *password, *where, *channel;
	struct backoff backoff;
	enum sub_state state;
	redisAsyncContext *ac;
	ev_timer timer;		/* connect timeout, or backoff */
	bool ever_subscribed;
	unsigned long reconnects;
};

static void sub_connect(struct apply_sub *s);

static void
sub_set_state(struct apply_sub *s, enum sub_state st)
{
	if (s->state == st)
		return;
	log_debug("channel: %s -> %s", sub_state_names[s->state],
	    sub_state_names[st]);
	s->state = st;
}

static void
sub_lost(struct apply_sub *s, const char *why)
{
	bool was_up = s->state == SUB_SUBSCRIBED;
	double delay;

	ev_timer_stop(s->loop, &s->timer);
	s->ac = NULL;
	if (s->state == SUB_STOPPED)
		return;
	delay = backoff_next(&s->backoff);
	log_warnx("channel: %s (%s); retrying in %.1fs", why, s->where, delay);
	sub_set_state(s, SUB_BACKOFF);
	ev_timer_set(&s->timer, delay, 0);
	ev_timer_start(s->loop, &s->timer);
	if (was_up)
		s->cb(s->arg, SUB_EVENT_LOST, NULL, 0);
}

static void
sub_drop(struct apply_sub *s, const char *why)
{
	redisAsyncContext *ac = s->ac;

	s->ac = NULL;
	if (ac != NULL)
		redisAsyncFree(ac);
	sub_lost(s, why);
}

static void
sub_message_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct apply_sub *s = ac->data;
	redisReply *reply = r;
	const char *kind;

	if (reply == NULL || s == NULL || s->ac != ac)
		return;	/* the link is going; the disconnect callback follows */
	if (reply->type == REDIS_REPLY_ERROR) {
		log_error("channel: SUBSCRIBE failed on %s: %s", s->where,
		    reply->str);
		redisAsyncDisconnect(ac);
		return;
	}
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
	    reply->element[0]->type != REDIS_REPLY_STRING)
		return;
	kind = reply->element[0]->str;
	if (strcmp(kind, "subscribe") == 0) {
		ev_timer_stop(s->loop, &s->timer);
		sub_set_state(s, SUB_SUBSCRIBED);
		backoff_reset(&s->backoff);
		if (s->ever_subscribed)
			s->reconnects++;
		s->ever_subscribed = true;
		log_info("channel: subscribed to \"%s\" on %s", s->channel,
		    s->where);
		s->cb(s->arg, SUB_EVENT_SUBSCRIBED, NULL, 0);
	} else if (strcmp(kind, "message") == 0 &&
	    reply->element[2]->type == REDIS_REPLY_STRING) {
		s->cb(s->arg, SUB_EVENT_MESSAGE, reply->element[2]->str,
		    reply->element[2]->len);
	}
}

static void
sub_subscribe(struct apply_sub *s)
{
	sub_set_state(s, SUB_SUBSCRIBING);
	if (redisAsyncCommand(s->ac, sub_message_cb, NULL, "SUBSCRIBE %s",
	    s->channel) != REDIS_OK)
		redisAsyncDisconnect(s->ac);
}

static void
sub_auth_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct apply_sub *s = ac->data;
	redisReply *reply = r;

	if (reply == NULL || s == NULL || s->ac != ac)
		return;
	if (reply->type == REDIS_REPLY_ERROR) {
		log_error("channel: AUTH failed on %s: %s", s->where, reply->str);
		redisAsyncDisconnect(ac);	/* the callback retries */
		return;
	}
	sub_subscribe(s);
}

static void
sub_keepalive(int fd, double interval)
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
sub_connect_cb(const redisAsyncContext *cac, int status)
{
	struct apply_sub *s = cac->data;
	redisAsyncContext *ac = s ? s->ac : NULL;

	if (s == NULL || ac != cac)
		return;
	if (status != REDIS_OK) {
		char why[256];

		snprintf(why, sizeof(why), "cannot connect: %s", cac->errstr);
		s->ac = NULL;	/* hiredis frees it after we return */
		sub_lost(s, why);
		return;
	}
	if (s->host != NULL)
		sub_keepalive(ac->c.fd, s->o.keepalive);
	if (s->password == NULL) {
		sub_subscribe(s);
		return;
	}
	sub_set_state(s, SUB_AUTH);
	if ((s->user != NULL ? redisAsyncCommand(ac, sub_auth_cb, NULL,
	    "AUTH %s %s", s->user, s->password) : redisAsyncCommand(ac,
	    sub_auth_cb, NULL, "AUTH %s", s->password)) != REDIS_OK)
		redisAsyncDisconnect(ac);
}

static void
sub_disconnect_cb(const redisAsyncContext *ac, int status)
{
	struct apply_sub *s = ac->data;
	char why[256];

	if (s == NULL || s->ac != ac)
		return;	/* we freed it ourselves */
	snprintf(why, sizeof(why), "connection lost: %s",
	    status == REDIS_OK ? "closed" : ac->errstr);
	s->ac = NULL;	/* hiredis frees it after we return */
	sub_lost(s, why);
}

static void
sub_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct apply_sub *s = w->data;

	if (s->state == SUB_BACKOFF)
		sub_connect(s);
	else if (s->state != SUB_SUBSCRIBED && s->state != SUB_STOPPED)
		sub_drop(s, "timed out connecting");
}

static void
sub_connect(struct apply_sub *s)
{
	redisAsyncContext *ac;

	sub_set_state(s, SUB_CONNECTING);
	ac = s->host != NULL ? redisAsyncConnect(s->host, s->o.port) :
	    redisAsyncConnectUnix(s->unix_path);
	if (ac == NULL || ac->err) {
		char why[256];

		snprintf(why, sizeof(why), "cannot connect: %s",
		    ac ? ac->errstr : "out of memory");
		if (ac != NULL)
			redisAsyncFree(ac);
		sub_lost(s, why);
		return;
	}
	ac->data = s;
	s->ac = ac;
	if (redisLibevAttach(s->loop, ac) != REDIS_OK) {
		sub_drop(s, "cannot attach to the event loop");
		return;
	}
	redisAsyncSetConnectCallback(ac, sub_connect_cb);
	redisAsyncSetDisconnectCallback(ac, sub_disconnect_cb);
	/* The timer covers the connect, AUTH and the confirmation. */
	ev_timer_set(&s->timer, s->o.connect_timeout, 0);
	ev_timer_start(s->loop, &s->timer);
}

static char *
dup_or_null(const char *v)
{
	return v != NULL ? xstrdup(v) : NULL;
}

struct apply_sub *
apply_sub_new(struct ev_loop *loop, const struct apply_sub_opts *opts,
    apply_sub_cb *cb, void *arg)
{
	struct apply_sub *s = xcalloc(1, sizeof(*s));

	s->loop = loop;
	s->cb = cb;
	s->arg = arg;
	s->o = *opts;
	s->host = dup_or_null(opts->host);
	s->unix_path = dup_or_null(opts->unix_path);
	s->user = dup_or_null(opts->user);
	s->password = dup_or_null(opts->password);
	s->where = xstrdup(opts->where);
	s->channel = xstrdup(opts->channel);
	s->o.host = s->o.unix_path = s->o.user = s->o.password = NULL;
	s->o.where = s->o.channel = NULL;
	s->backoff.min = opts->reconnect_min;
	s->backoff.max = opts->reconnect_max;
	ev_timer_init(&s->timer, sub_timer_cb, 0, 0);
	s->timer.data = s;
	return s;
}

void
apply_sub_start(struct apply_sub *s)
{
	if (s->state == SUB_STOPPED)
		sub_connect(s);
}

void
apply_sub_free(struct apply_sub *s)
{
	if (s == NULL)
		return;
	sub_set_state(s, SUB_STOPPED);
	if (s->ac != NULL) {
		redisAsyncContext *ac = s->ac;

		s->ac = NULL;
		redisAsyncFree(ac);
	}
	ev_timer_stop(s->loop, &s->timer);
	free(s->host);
	free(s->unix_path);
	free(s->user);
	free(s->password);
	free(s->where);
	free(s->channel);
	free(s);
}

bool
apply_sub_subscribed(const struct apply_sub *s)
{
	return s->state == SUB_SUBSCRIBED;
}

const char *
apply_sub_state_name(const struct apply_sub *s)
{
	return sub_state_names[s->state];
}

unsigned long
apply_sub_reconnects(const struct apply_sub *s)
{
	return s->reconnects;
}
