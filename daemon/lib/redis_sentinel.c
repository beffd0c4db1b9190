/*
 * Sentinel discovery and the +switch-master follower, each on a hiredis
 * async link of its own (a sentinel is not a data node: no SELECT, no
 * CLIENT SETNAME, its own password).
 *
 * A resolve asks one sentinel at a time: connect, AUTH when
 * sentinel_password is set, SENTINEL get-master-addr-by-name. An address
 * ends it; anything else (refused, an error, nil, no answer within the
 * timeout) moves on to the next sentinel, and the next resolve starts
 * after the one that failed. Steps run from a zero timer, never inside a
 * hiredis callback, so the owner's callback may connect or resolve again.
 *
 * The follower keeps one link SUBSCRIBEd to +switch-master, whose
 * payload is "<name> <old-ip> <old-port> <new-ip> <new-port>"; other
 * names are ignored. Its link moves to the next sentinel, with backoff,
 * when it is lost; TCP keepalive finds a sentinel that vanished.
 *
 * hiredis rules as in redis_conn.c: a context is never freed inside its
 * own callbacks, and the pointer to it is cleared before redisAsyncFree()
 * so that the disconnect callback this runs knows it is expected.
 */
#include "lib/redis_sentinel.h"
#include "lib/redis_sentinel_reply.h"
#include "lib/backoff.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xalloc.h"

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
#include <sys/time.h>

struct redis_sentinel {
	struct ev_loop *loop;
	void *arg;
	char *name;
	struct redis_addr addr;
	double timeout;
	size_t start;		/* the sentinel the next round asks first */

	/* The resolve under way; resolve_cb NULL: none. */
	redis_sentinel_resolve_cb *resolve_cb;
	redisAsyncContext *rac;
	size_t first, tried, cur;	/* this round's first, count, current */
	bool answered;		/* the current sentinel has had its say */
	bool found;
	char host[256];
	int port;
	struct buf said;	/* what each sentinel said, for the log */
	char known_host[256];	/* the last address given; "" none */
	int known_port;
	ev_timer rtimer;	/* the current sentinel's deadline */
	ev_timer rstep;		/* the next step, outside hiredis */

	/* The follower; switch_cb NULL: not following. */
	redis_sentinel_switch_cb *switch_cb;
	redisAsyncContext *fac;
	size_t fcur;
	struct backoff fbackoff;
	ev_timer ftimer;	/* until subscribed, or the backoff */
};

static void
sentinel_where(const struct redis_sentinel *s, size_t i, char *out,
    size_t outlen)
{
	redis_hostport_format(s->addr.sentinels[i].host,
	    s->addr.sentinels[i].port, out, outlen);
}

static void
sentinel_keepalive(int fd)
{
	int on = 1, idle = 10, intvl = 3, cnt = 3;

	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* A new context to sentinel i, attached; NULL (with why) on failure. */
static redisAsyncContext *
sentinel_connect(struct redis_sentinel *s, size_t i, char *why, size_t len)
{
	redisAsyncContext *ac = redisAsyncConnect(s->addr.sentinels[i].host,
	    s->addr.sentinels[i].port);

	if (ac == NULL || ac->err) {
		snprintf(why, len, "cannot connect: %s",
		    ac ? ac->errstr : "out of memory");
		if (ac != NULL)
			redisAsyncFree(ac);
		return NULL;
	}
	ac->data = s;
	if (redisLibevAttach(s->loop, ac) != REDIS_OK) {
		snprintf(why, len, "cannot attach to the event loop");
		redisAsyncFree(ac);
		return NULL;
	}
	return ac;
}

/* AUTH with sentinel_password, when there is one. */
static void
sentinel_auth(struct redis_sentinel *s, redisAsyncContext *ac,
    redisCallbackFn *fn)
{
	const char *argv[] = { "AUTH", s->addr.sentinel_password };

	if (s->addr.sentinel_password != NULL)
		(void)redisAsyncCommandArgv(ac, fn, NULL, 2, argv, NULL);
}

int
redis_sentinel_ask(const struct redis_addr *a, size_t i, double timeout,
    char *host, size_t hostlen, int *port, char *why, size_t whylen)
{
	struct timeval tv = { (time_t)timeout,
	    (suseconds_t)((timeout - (time_t)timeout) * 1e6) };
	redisContext *c = redisConnectWithTimeout(a->sentinels[i].host,
	    a->sentinels[i].port, tv);
	redisReply *r = NULL;
	int rc = -1;

	if (c == NULL || c->err) {
		snprintf(why, whylen, "cannot connect: %s",
		    c ? c->errstr : "out of memory");
		goto done;
	}
	redisSetTimeout(c, tv);
	if (a->sentinel_password != NULL) {
		r = redisCommand(c, "AUTH %s", a->sentinel_password);
		if (r == NULL || r->type == REDIS_REPLY_ERROR) {
			snprintf(why, whylen, "AUTH refused: %s (check "
			    "sentinel_password)", r ? r->str : c->errstr);
			goto done;
		}
		freeReplyObject(r);
	}
	r = redisCommand(c, "SENTINEL get-master-addr-by-name %s", a->master);
	if (r == NULL)
		snprintf(why, whylen, "%s", c->errstr);
	else
		rc = redis_sentinel_parse_addr(r, host, hostlen, port, why,
		    whylen);
done:
	freeReplyObject(r);
	redisFree(c);
	return rc;
}

/* -- resolve ------------------------------------------------------------ */

static void
resolve_next(struct redis_sentinel *s)
{
	ev_timer_stop(s->loop, &s->rstep);
	ev_timer_set(&s->rstep, 0, 0);
	ev_timer_start(s->loop, &s->rstep);
}

/* The current sentinel's say, once: found, or why not. */
static void
resolve_note(struct redis_sentinel *s, const char *why)
{
	char where[300];

	if (s->answered)
		return;
	s->answered = true;
	if (why == NULL) {
		s->found = true;
		s->start = s->cur;
		return;
	}
	s->start = (s->cur + 1) % s->addr.nsentinels;
	sentinel_where(s, s->cur, where, sizeof(where));
	if (s->said.len > 0)
		buf_adds(&s->said, "; ");
	buf_adds(&s->said, where);
	buf_adds(&s->said, ": ");
	buf_adds(&s->said, why);
}

static void
resolve_auth_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct redis_sentinel *s = ac->data;
	redisReply *reply = r;
	char why[300];

	if (reply == NULL || s->rac != ac || reply->type != REDIS_REPLY_ERROR)
		return;
	/* The reply never holds the password. */
	snprintf(why, sizeof(why), "AUTH refused: %s (check "
	    "sentinel_password)", reply->str);
	resolve_note(s, why);
	redisAsyncDisconnect(ac);
}

static void
resolve_addr_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct redis_sentinel *s = ac->data;
	char why[300];

	if (r == NULL || s->rac != ac || s->answered)
		return;
	if (redis_sentinel_parse_addr(r, s->host, sizeof(s->host), &s->port,
	    why, sizeof(why)) == 0)
		resolve_note(s, NULL);
	else
		resolve_note(s, why);
	redisAsyncDisconnect(ac);
}

static void
resolve_connect_cb(const redisAsyncContext *ac, int status)
{
	struct redis_sentinel *s = ac->data;
	const char *argv[] = { "SENTINEL", "get-master-addr-by-name",
	    s->addr.master };
	char why[300];

	if (s->rac != ac)
		return;
	if (status != REDIS_OK) {
		snprintf(why, sizeof(why), "cannot connect: %s", ac->errstr);
		resolve_note(s, why);
		s->rac = NULL;	/* hiredis frees it after we return */
		ev_timer_stop(s->loop, &s->rtimer);
		resolve_next(s);
		return;
	}
	sentinel_auth(s, s->rac, resolve_auth_cb);
	(void)redisAsyncCommandArgv(s->rac, resolve_addr_cb, NULL, 3, argv,
	    NULL);
}

static void
resolve_disconnect_cb(const redisAsyncContext *ac, int status)
{
	struct redis_sentinel *s = ac->data;
	char why[300];

	if (s->rac != ac)
		return;	/* freed by us */
	snprintf(why, sizeof(why), "connection lost: %s",
	    status == REDIS_OK ? "closed" : ac->errstr);
	resolve_note(s, why);
	s->rac = NULL;
	ev_timer_stop(s->loop, &s->rtimer);
	resolve_next(s);
}

static void
resolve_drop(struct redis_sentinel *s)
{
	redisAsyncContext *ac = s->rac;

	s->rac = NULL;
	ev_timer_stop(s->loop, &s->rtimer);
	if (ac != NULL)
		redisAsyncFree(ac);
}

static void
resolve_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct redis_sentinel *s = w->data;
	char why[64];

	snprintf(why, sizeof(why), "no answer within %.1fs", s->timeout);
	resolve_note(s, why);
	resolve_drop(s);
	resolve_next(s);
}

static void
resolve_step_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct redis_sentinel *s = w->data;
	redis_sentinel_resolve_cb *cb = s->resolve_cb;
	char why[300];

	if (cb == NULL || s->rac != NULL)
		return;
	if (s->found || s->tried == s->addr.nsentinels) {
		s->resolve_cb = NULL;
		if (!s->found)
			log_warnx("%s: no sentinel gave the address of master "
			    "\"%s\": %s", s->name, s->addr.master,
			    s->said.data ? s->said.data : "");
		else
			log_debug("%s: sentinels: master \"%s\" is at %s:%d",
			    s->name, s->addr.master, s->host, s->port);
		if (s->found) {
			snprintf(s->known_host, sizeof(s->known_host), "%s",
			    s->host);
			s->known_port = s->port;
		}
		cb(s->arg, s->found ? s->host : NULL, s->port);
		return;
	}
	s->cur = (s->first + s->tried++) % s->addr.nsentinels;
	s->answered = false;
	s->rac = sentinel_connect(s, s->cur, why, sizeof(why));
	if (s->rac == NULL) {
		resolve_note(s, why);
		resolve_next(s);
		return;
	}
	redisAsyncSetConnectCallback(s->rac, resolve_connect_cb);
	redisAsyncSetDisconnectCallback(s->rac, resolve_disconnect_cb);
	ev_timer_set(&s->rtimer, s->timeout, 0);
	ev_timer_start(s->loop, &s->rtimer);
}

void
redis_sentinel_cancel(struct redis_sentinel *s)
{
	s->resolve_cb = NULL;
	resolve_drop(s);
	ev_timer_stop(s->loop, &s->rstep);
}

void
redis_sentinel_resolve(struct redis_sentinel *s, redis_sentinel_resolve_cb *cb)
{
	redis_sentinel_cancel(s);
	s->resolve_cb = cb;
	s->first = s->start;
	s->tried = 0;
	s->found = false;
	buf_reset(&s->said);
	resolve_next(s);
}

/* The cache above is all a locate needs. */
static void
locate_done(void *arg, const char *host, int port)
{
}

int
redis_sentinel_locate(struct redis_sentinel *s, char *host, size_t hostlen,
    int *port)
{
	if (s->resolve_cb == NULL)
		redis_sentinel_resolve(s, locate_done);
	if (s->known_host[0] == '\0' || strlen(s->known_host) >= hostlen)
		return -1;
	memcpy(host, s->known_host, strlen(s->known_host) + 1);
	*port = s->known_port;
	return 0;
}

/* -- follow ------------------------------------------------------------- */

static void follow_connect(struct redis_sentinel *s);

static void
follow_retry(struct redis_sentinel *s, const char *why)
{
	char where[300];
	double delay = backoff_next(&s->fbackoff);

	sentinel_where(s, s->fcur, where, sizeof(where));
	log_warnx("%s: sentinel %s: %s; following master \"%s\" through the "
	    "next sentinel in %.1fs", s->name, where, why, s->addr.master,
	    delay);
	s->fcur = (s->fcur + 1) % s->addr.nsentinels;
	ev_timer_stop(s->loop, &s->ftimer);
	ev_timer_set(&s->ftimer, delay, 0);
	ev_timer_start(s->loop, &s->ftimer);
}

/* "<name> <old-ip> <old-port> <new-ip> <new-port>": ours, or another's. */
static void
follow_message(struct redis_sentinel *s, const char *p, size_t len)
{
	char host[256];
	int port;

	if (redis_sentinel_parse_switch(p, len, s->addr.master, host,
	    sizeof(host), &port) == -1)
		return;
	log_info("%s: sentinel: master \"%s\" switched to %s:%d", s->name,
	    s->addr.master, host, port);
	snprintf(s->known_host, sizeof(s->known_host), "%s", host);
	s->known_port = port;
	s->switch_cb(s->arg, host, port);
}

static void
follow_msg_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct redis_sentinel *s = ac->data;
	redisReply *reply = r;

	if (reply == NULL || s->fac != ac)
		return;
	if (reply->type == REDIS_REPLY_ERROR) {
		log_warnx("%s: SUBSCRIBE +switch-master refused: %s", s->name,
		    reply->str);
		redisAsyncDisconnect(ac);
		return;
	}
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
	    reply->element[0]->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(reply->element[0]->str, "subscribe") == 0) {
		ev_timer_stop(s->loop, &s->ftimer);
		backoff_reset(&s->fbackoff);
		log_debug("%s: following master \"%s\" on its sentinels",
		    s->name, s->addr.master);
	} else if (strcmp(reply->element[0]->str, "message") == 0 &&
	    reply->element[2]->type == REDIS_REPLY_STRING) {
		follow_message(s, reply->element[2]->str,
		    reply->element[2]->len);
	}
}

static void
follow_auth_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct redis_sentinel *s = ac->data;
	redisReply *reply = r;

	if (reply == NULL || s->fac != ac || reply->type != REDIS_REPLY_ERROR)
		return;
	log_warnx("%s: AUTH refused by a sentinel: %s (check "
	    "sentinel_password)", s->name, reply->str);
	redisAsyncDisconnect(ac);
}

static void
follow_connect_cb(const redisAsyncContext *ac, int status)
{
	struct redis_sentinel *s = ac->data;
	const char *argv[] = { "SUBSCRIBE", "+switch-master" };
	char why[300];

	if (s->fac != ac)
		return;
	if (status != REDIS_OK) {
		snprintf(why, sizeof(why), "cannot connect: %s", ac->errstr);
		s->fac = NULL;
		follow_retry(s, why);
		return;
	}
	sentinel_keepalive(ac->c.fd);
	sentinel_auth(s, s->fac, follow_auth_cb);
	(void)redisAsyncCommandArgv(s->fac, follow_msg_cb, NULL, 2, argv, NULL);
}

static void
follow_disconnect_cb(const redisAsyncContext *ac, int status)
{
	struct redis_sentinel *s = ac->data;
	char why[300];

	if (s->fac != ac)
		return;
	snprintf(why, sizeof(why), "connection lost: %s",
	    status == REDIS_OK ? "closed" : ac->errstr);
	s->fac = NULL;
	follow_retry(s, why);
}

static void
follow_connect(struct redis_sentinel *s)
{
	char why[300];

	s->fac = sentinel_connect(s, s->fcur, why, sizeof(why));
	if (s->fac == NULL) {
		follow_retry(s, why);
		return;
	}
	redisAsyncSetConnectCallback(s->fac, follow_connect_cb);
	redisAsyncSetDisconnectCallback(s->fac, follow_disconnect_cb);
	ev_timer_set(&s->ftimer, s->timeout, 0);
	ev_timer_start(s->loop, &s->ftimer);
}

static void
follow_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct redis_sentinel *s = w->data;
	redisAsyncContext *ac = s->fac;

	if (ac == NULL) {
		follow_connect(s);	/* the backoff ended */
		return;
	}
	s->fac = NULL;
	redisAsyncFree(ac);
	follow_retry(s, "no subscription in time");
}

void
redis_sentinel_follow(struct redis_sentinel *s, redis_sentinel_switch_cb *cb)
{
	s->switch_cb = cb;
	if (s->fac == NULL && !ev_is_active(&s->ftimer)) {
		s->fcur = s->start;
		follow_connect(s);
	}
}

/* -- life --------------------------------------------------------------- */

struct redis_sentinel *
redis_sentinel_new(struct ev_loop *loop, const struct redis_sentinel_opts *o,
    void *arg)
{
	struct redis_sentinel *s = xcalloc(1, sizeof(*s));

	s->loop = loop;
	s->arg = arg;
	s->name = xstrdup(o->name);
	redis_addr_copy(&s->addr, o->addr);
	s->timeout = o->timeout > 0 ? o->timeout : 1;
	s->fbackoff.min = o->reconnect_min;
	s->fbackoff.max = o->reconnect_max;
	ev_timer_init(&s->rtimer, resolve_timer_cb, 0, 0);
	s->rtimer.data = s;
	ev_timer_init(&s->rstep, resolve_step_cb, 0, 0);
	s->rstep.data = s;
	ev_timer_init(&s->ftimer, follow_timer_cb, 0, 0);
	s->ftimer.data = s;
	return s;
}

void
redis_sentinel_free(struct redis_sentinel *s)
{
	redisAsyncContext *ac;

	if (s == NULL)
		return;
	redis_sentinel_cancel(s);
	ev_timer_stop(s->loop, &s->ftimer);
	if ((ac = s->fac) != NULL) {
		s->fac = NULL;
		redisAsyncFree(ac);
	}
	buf_free(&s->said);
	redis_addr_free(&s->addr);
	free(s->name);
	free(s);
}
