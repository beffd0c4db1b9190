/*
 * The subscriber link (redis_psub.h). hiredis 0.14's async layer knows
 * only SUBSCRIBE and PSUBSCRIBE and aborts on the first `smessage`, so
 * this file owns a non-blocking redisContext: hiredis connects, formats
 * and writes commands and feeds its reader, while the libev watchers,
 * the timeouts and the meaning of each reply are here.
 *
 * A connect pipelines the whole login: AUTH, SELECT (outside a cluster),
 * CLIENT SETNAME, CLUSTER SLOTS (in a cluster: to learn other nodes) and
 * the subscription. Replies come back in that order; the steps still
 * awaited sit in a small queue, and once it is empty every reply is a
 * push. A -MOVED to the subscription sends the next connect to the
 * owner named; a failed connect goes to the next node known. A push
 * that unsubscribes us, which Redis 7 sends when the channel's slot
 * leaves the node or the node is demoted, is answered on the same link
 * by subscribing again, which ends at the new owner through -MOVED.
 *
 * What a hostile or broken server can cost is bounded: the reader's
 * object functions are wrapped so that one reply holds at most about
 * max_message bytes of objects, the unparsed input is capped likewise,
 * pushes for other channels are ignored, and a link that fails before
 * it has been subscribed for connect_timeout keeps growing the backoff.
 */
#include "lib/redis_psub.h"
#include "lib/backoff.h"
#include "lib/log.h"
#include "lib/redis_cap.h"
#include "lib/redis_nodes.h"
#include "lib/redis_slots.h"
#include "lib/sock.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <ev.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define PSUB_MAX_STEPS 6	/* replies awaited during the login */

enum psub_step {
	STEP_AUTH,
	STEP_SELECT,
	STEP_SETNAME,
	STEP_SLOTS,
	STEP_SUBSCRIBE,
};

struct redis_psub {
	struct ev_loop *loop;
	redis_psub_cb *cb;
	void *arg;
	struct redis_psub_opts o;	/* numbers; strings are below */
	char *name, *channel, *client_name;
	struct redis_addr addr;
	bool sharded;		/* SSUBSCRIBE rather than SUBSCRIBE */
	struct backoff backoff;

	enum redis_psub_state state;
	redisContext *rc;
	ev_io io;
	ev_timer timer;		/* connect timeout, or backoff */
	enum psub_step steps[PSUB_MAX_STEPS];
	int head, nsteps;	/* the next reply answers steps[head] */
	struct redis_cap cap;	/* on the reader of rc */

	struct redis_nodes nodes;	/* in a cluster; [0]: the seed */
	int cur;		/* the node of the next connect */
	unsigned hops;		/* MOVED followed since the last subscription */
	bool ever;		/* subscribed once already */
	unsigned long resubscriptions;
	ev_tstamp subscribed_at;
	char where[REDIS_NODES_HOST_MAX + 16];
};

static void psub_connect(struct redis_psub *p);
static int psub_flush(struct redis_psub *p);

static const char *const psub_state_names[] = {
	[REDIS_PSUB_STOPPED] = "stopped",
	[REDIS_PSUB_CONNECTING] = "connecting",
	[REDIS_PSUB_SUBSCRIBING] = "subscribing",
	[REDIS_PSUB_SUBSCRIBED] = "subscribed",
	[REDIS_PSUB_BACKOFF] = "backoff",
};

const char *
redis_psub_state_name(enum redis_psub_state st)
{
	return psub_state_names[st];
}

static void
psub_set_state(struct redis_psub *p, enum redis_psub_state st)
{
	if (p->state == st)
		return;
	log_debug("%s: %s -> %s", p->name, psub_state_names[p->state],
	    psub_state_names[st]);
	p->state = st;
}

static void
psub_where(struct redis_psub *p, const char *host, int port)
{
	if (host != NULL)
		redis_hostport_format(host, port, p->where, sizeof(p->where));
	else
		snprintf(p->where, sizeof(p->where), "%s", p->addr.where);
}

/* The host of the current node: what an empty host in a redirect means. */
static const char *
psub_cur_host(const struct redis_psub *p)
{
	return p->nodes.n > 0 ? p->nodes.v[p->cur].host : "";
}

static void
psub_watch(struct redis_psub *p, int events)
{
	if ((p->io.events & (EV_READ | EV_WRITE)) == events &&
	    ev_is_active(&p->io))
		return;
	ev_io_stop(p->loop, &p->io);
	ev_io_set(&p->io, p->rc->fd, events);
	ev_io_start(p->loop, &p->io);
}

static void
psub_close_link(struct redis_psub *p)
{
	ev_io_stop(p->loop, &p->io);
	ev_timer_stop(p->loop, &p->timer);
	if (p->rc != NULL)
		redisFree(p->rc);
	p->rc = NULL;
	p->head = p->nsteps = 0;
}

/*
 * The link is over: closes it, moves on to the next node known when
 * rotate, and connects again at once (now) or after the backoff. LOST
 * goes to the owner when it was subscribed.
 */
static void
psub_retry(struct redis_psub *p, const char *why, bool rotate, bool now)
{
	bool was = p->state == REDIS_PSUB_SUBSCRIBED;
	double delay = 0;

	psub_close_link(p);
	if (p->state == REDIS_PSUB_STOPPED)
		return;
	if (rotate && p->nodes.n > 1)
		p->cur = (p->cur + 1) % p->nodes.n;
	/* Only a subscription that lasted clears the backoff: a server
	 * that confirms and then misbehaves is not retried at full speed. */
	if (was && ev_now(p->loop) - p->subscribed_at >= p->o.connect_timeout)
		backoff_reset(&p->backoff);
	if (!now)
		delay = backoff_next(&p->backoff);
	if (now)
		log_info("%s: %s (%s)", p->name, why, p->where);
	else
		log_warnx("%s: %s (%s); retrying in %.1fs", p->name, why,
		    p->where, delay);
	psub_set_state(p, REDIS_PSUB_BACKOFF);
	ev_timer_set(&p->timer, delay, 0);
	ev_timer_start(p->loop, &p->timer);
	if (was)
		p->cb(p->arg, REDIS_PSUB_EVENT_LOST, NULL, 0);
}

static void
psub_send(struct redis_psub *p, enum psub_step step, int argc,
    const char **argv)
{
	if (p->head == p->nsteps)
		p->head = p->nsteps = 0;
	if (redisAppendCommandArgv(p->rc, argc, argv, NULL) == REDIS_OK &&
	    p->nsteps < PSUB_MAX_STEPS)
		p->steps[p->nsteps++] = step;
	/* Else out of memory: the connect timeout ends the link. */
}

static void
psub_send_subscribe(struct redis_psub *p)
{
	const char *argv[] = { p->sharded ? "SSUBSCRIBE" : "SUBSCRIBE",
	    p->channel };

	psub_send(p, STEP_SUBSCRIBE, 2, argv);
}

/* Connected: the login and the subscription, in one pipeline. */
static void
psub_login(struct redis_psub *p)
{
	const char *argv[3];
	char db[16];
	int argc = 0;

	if (p->addr.password != NULL) {
		argv[argc++] = "AUTH";
		if (p->addr.user != NULL)
			argv[argc++] = p->addr.user;
		argv[argc++] = p->addr.password;
		psub_send(p, STEP_AUTH, argc, argv);
	}
	if (p->addr.db != 0 && p->addr.cluster == REDIS_CLUSTER_OFF) {
		snprintf(db, sizeof(db), "%d", p->addr.db);
		argv[0] = "SELECT";
		argv[1] = db;
		psub_send(p, STEP_SELECT, 2, argv);
	}
	if (p->client_name != NULL) {
		argv[0] = "CLIENT";
		argv[1] = "SETNAME";
		argv[2] = p->client_name;
		psub_send(p, STEP_SETNAME, 3, argv);
	}
	if (p->addr.cluster != REDIS_CLUSTER_OFF && p->o.locate == NULL) {
		argv[0] = "CLUSTER";
		argv[1] = "SLOTS";
		psub_send(p, STEP_SLOTS, 2, argv);
	}
	psub_send_subscribe(p);
}

static void
psub_connected(struct redis_psub *p)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(p->rc->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err != 0) {
		char why[160];

		snprintf(why, sizeof(why), "cannot connect: %s", strerror(err));
		psub_retry(p, why, true, false);
		return;
	}
	if (p->rc->connection_type == REDIS_CONN_TCP && p->o.keepalive > 0)
		sock_keepalive(p->rc->fd, p->o.keepalive);
	psub_set_state(p, REDIS_PSUB_SUBSCRIBING);
	psub_login(p);
	(void)psub_flush(p);
}

static void
psub_subscribed(struct redis_psub *p)
{
	ev_timer_stop(p->loop, &p->timer);
	if (p->ever)
		p->resubscriptions++;
	p->ever = true;
	p->hops = 0;
	p->subscribed_at = ev_now(p->loop);
	psub_set_state(p, REDIS_PSUB_SUBSCRIBED);
	log_info("%s: subscribed to \"%s\" on %s%s", p->name, p->channel,
	    p->where, p->sharded ? " (sharded, SSUBSCRIBE)" : "");
	p->cb(p->arg, REDIS_PSUB_EVENT_SUBSCRIBED, NULL, 0);
}

/* -MOVED slot host:port to the subscription: the next connect goes
 * there, at once the first time since the last subscription. */
static void
psub_moved(struct redis_psub *p, const char *err, size_t len)
{
	struct redis_redirect r;
	char to[REDIS_NODES_HOST_MAX + 16];
	char why[600];
	const char *host;
	int port, i;

	if (redis_err_classify(err, len, &r) != REDIS_ERR_MOVED) {
		psub_retry(p, "a malformed MOVED reply to SSUBSCRIBE", true,
		    false);
		return;
	}
	host = r.host[0] != '\0' ? r.host : psub_cur_host(p);
	port = r.port;
	if ((i = redis_nodes_add(&p->nodes, host, port, true)) == -1) {
		psub_retry(p, "a MOVED to an unusable host", true, false);
		return;
	}
	if (i == p->cur && p->o.locate == NULL) {
		psub_retry(p, "a MOVED to the node itself", true, false);
		return;
	}
	p->cur = i;
	redis_hostport_format(host, port, to, sizeof(to));
	snprintf(why, sizeof(why), "\"%.200s\" is served by %s (MOVED)",
	    p->channel, to);
	psub_retry(p, why, false, p->hops++ == 0);
}

static bool
psub_is(const redisReply *r, const char *s)
{
	return r->type == REDIS_REPLY_STRING && strlen(s) == r->len &&
	    memcmp(r->str, s, r->len) == 0;
}

/* The reply to a step of the login. -1 when the link was closed. */
static int
psub_step_reply(struct redis_psub *p, enum psub_step step, redisReply *r)
{
	static const char *const what[] = { [STEP_AUTH] = "AUTH",
	    [STEP_SELECT] = "SELECT", [STEP_SETNAME] = "CLIENT SETNAME",
	    [STEP_SLOTS] = "CLUSTER SLOTS", [STEP_SUBSCRIBE] = "SUBSCRIBE" };
	const char *cmd = step == STEP_SUBSCRIBE && p->sharded ?
	    "SSUBSCRIBE" : what[step];
	char why[256];

	if (r->type == REDIS_REPLY_ERROR && step == STEP_SUBSCRIBE &&
	    p->sharded && strncmp(r->str, "MOVED ", 6) == 0) {
		psub_moved(p, r->str, r->len);
		return -1;
	}
	if (r->type == REDIS_REPLY_ERROR &&
	    (step == STEP_SETNAME || step == STEP_SLOTS)) {
		log_debug("%s: %s refused: %s", p->name, cmd, r->str);
		return 0;	/* conveniences: an ACL may forbid them */
	}
	if (r->type == REDIS_REPLY_ERROR) {
		log_error("%s: %s failed on %s: %s", p->name, cmd, p->where,
		    r->str);
		snprintf(why, sizeof(why), "connection lost: %s", r->str);
		psub_retry(p, why, true, false);
		return -1;
	}
	if (step == STEP_SLOTS)
		redis_nodes_learn(&p->nodes, r, psub_cur_host(p));
	if (step != STEP_SUBSCRIBE)
		return 0;
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
	    psub_is(r->element[0], p->sharded ? "ssubscribe" : "subscribe") &&
	    psub_is(r->element[1], p->channel)) {
		psub_subscribed(p);
		return 0;
	}
	psub_retry(p, "an unexpected reply to the subscription", true, false);
	return -1;
}

/* While subscribed: a message, or the server unsubscribing us. */
static int
psub_push(struct redis_psub *p, redisReply *r)
{
	const char *msg = p->sharded ? "smessage" : "message";
	const char *unsub = p->sharded ? "sunsubscribe" : "unsubscribe";

	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING) {
		psub_retry(p, r->type == REDIS_REPLY_ERROR ? "an error while "
		    "subscribed" : "an unexpected reply while subscribed", false,
		    false);
		return -1;
	}
	if (!psub_is(r->element[1], p->channel))
		return 0;	/* not ours: we asked for one channel only */
	if (psub_is(r->element[0], msg) &&
	    r->element[2]->type == REDIS_REPLY_STRING) {
		p->cb(p->arg, REDIS_PSUB_EVENT_MESSAGE, r->element[2]->str,
		    r->element[2]->len);
		return 0;
	}
	if (!psub_is(r->element[0], unsub) ||
	    p->state != REDIS_PSUB_SUBSCRIBED)
		return 0;
	/* Not asked for: the slot moved away, or the node was demoted. The
	 * link stays usable; subscribing again finds the owner. */
	log_warnx("%s: %s unsubscribed us from \"%s\" (the channel's slot "
	    "moved, or the node was demoted); subscribing again", p->name,
	    p->where, p->channel);
	psub_set_state(p, REDIS_PSUB_SUBSCRIBING);
	ev_timer_set(&p->timer, p->o.connect_timeout, 0);
	ev_timer_start(p->loop, &p->timer);
	psub_send_subscribe(p);
	if (psub_flush(p) == -1)
		return -1;
	p->cb(p->arg, REDIS_PSUB_EVENT_LOST, NULL, 0);
	return 0;
}

static void
psub_read(struct redis_psub *p)
{
	char why[160];
	void *reply;

	if (redisBufferRead(p->rc) == REDIS_ERR) {
		snprintf(why, sizeof(why), "connection lost: %s",
		    p->rc->err == REDIS_ERR_EOF ? "closed" : p->rc->errstr);
		psub_retry(p, why, p->state != REDIS_PSUB_SUBSCRIBED, false);
		return;
	}
	for (;;) {
		int rv;

		reply = NULL;
		if (redisGetReplyFromReader(p->rc, &reply) == REDIS_ERR) {
			if (p->cap.over)
				snprintf(why, sizeof(why), "a reply over %zu "
				    "bytes", p->o.max_message);
			else
				snprintf(why, sizeof(why), "protocol error: %s",
				    p->rc->errstr);
			psub_retry(p, why, true, false);
			return;
		}
		if (reply == NULL)
			break;
		redis_cap_next(&p->cap);
		rv = p->head < p->nsteps ?
		    psub_step_reply(p, p->steps[p->head++], reply) :
		    psub_push(p, reply);
		freeReplyObject(reply);
		if (rv == -1 || p->rc == NULL)
			return;
	}
	/* A bulk string waits whole in the buffer before the reader makes
	 * an object of it. */
	if (redis_cap_pending(p->rc->reader) > p->cap.max) {
		snprintf(why, sizeof(why), "a reply over %zu bytes",
		    p->o.max_message);
		psub_retry(p, why, true, false);
	}
}

/* Writes what hiredis holds; -1 when the link was closed. */
static int
psub_flush(struct redis_psub *p)
{
	int done = 0;
	char why[160];

	if (redisBufferWrite(p->rc, &done) == REDIS_ERR) {
		snprintf(why, sizeof(why), "connection lost: %s", p->rc->errstr);
		psub_retry(p, why, p->state != REDIS_PSUB_SUBSCRIBED, false);
		return -1;
	}
	psub_watch(p, done ? EV_READ : EV_READ | EV_WRITE);
	return 0;
}

static void
psub_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct redis_psub *p = w->data;

	if (p->state == REDIS_PSUB_CONNECTING) {
		if (revents & EV_WRITE)
			psub_connected(p);
		return;
	}
	if ((revents & EV_WRITE) && psub_flush(p) == -1)
		return;
	if (revents & EV_READ)
		psub_read(p);
}

static void
psub_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct redis_psub *p = w->data;

	if (p->state == REDIS_PSUB_BACKOFF)
		psub_connect(p);
	else if (p->state == REDIS_PSUB_CONNECTING)
		psub_retry(p, "timed out connecting", true, false);
	else if (p->state == REDIS_PSUB_SUBSCRIBING)
		psub_retry(p, "timed out subscribing", true, false);
}

/* The address of the next connect: the owner's hook (Sentinel), the
 * node known to serve the channel, or the URL. */
static redisContext *
psub_open(struct redis_psub *p)
{
	char host[REDIS_NODES_HOST_MAX];
	int port;

	if (p->o.locate != NULL) {
		if (p->o.locate(p->o.locate_arg, host, sizeof(host), &port) == -1)
			return NULL;
		psub_where(p, host, port);
		return redisConnectNonBlock(host, port);
	}
	if (p->addr.unix_path != NULL) {
		psub_where(p, NULL, 0);
		return redisConnectUnixNonBlock(p->addr.unix_path);
	}
	if (p->nodes.n == 0) {	/* the url's host is not one to list */
		psub_where(p, p->addr.host, p->addr.port);
		return redisConnectNonBlock(p->addr.host, p->addr.port);
	}
	psub_where(p, p->nodes.v[p->cur].host, p->nodes.v[p->cur].port);
	/* Note: a host name is resolved with a blocking getaddrinfo. */
	return redisConnectNonBlock(p->nodes.v[p->cur].host,
	    p->nodes.v[p->cur].port);
}

static void
psub_connect(struct redis_psub *p)
{
	char why[200];

	psub_set_state(p, REDIS_PSUB_CONNECTING);
	p->rc = psub_open(p);
	if (p->rc == NULL || p->rc->err) {
		snprintf(why, sizeof(why), "cannot connect: %s", p->rc ?
		    p->rc->errstr : p->o.locate ? "no address known yet" :
		    "out of memory");
		psub_retry(p, why, true, false);
		return;
	}
	redis_cap_attach(&p->cap, p->rc->reader);
	ev_io_set(&p->io, p->rc->fd, EV_WRITE);
	ev_io_start(p->loop, &p->io);
	ev_timer_set(&p->timer, p->o.connect_timeout, 0);
	ev_timer_start(p->loop, &p->timer);
}

/* -- the owner's side -------------------------------------------------- */

struct redis_psub *
redis_psub_new(struct ev_loop *loop, const struct redis_psub_opts *opts,
    redis_psub_cb *cb, void *arg)
{
	struct redis_psub *p = xcalloc(1, sizeof(*p));

	p->loop = loop;
	p->cb = cb;
	p->arg = arg;
	p->o = *opts;
	p->o.name = p->o.channel = p->o.client_name = NULL;
	p->o.addr = NULL;
	if (p->o.max_message == 0)
		p->o.max_message = REDIS_PSUB_MAX_MESSAGE;
	p->cap.max = p->o.max_message + 4096;	/* and the framing */
	p->name = xstrdup(opts->name);
	p->channel = xstrdup(opts->channel);
	p->client_name = opts->client_name ? xstrdup(opts->client_name) : NULL;
	redis_addr_copy(&p->addr, opts->addr);
	p->sharded = p->addr.cluster == REDIS_CLUSTER_ON;
	if (p->addr.host != NULL)
		(void)redis_nodes_add(&p->nodes, p->addr.host, p->addr.port,
		    false);
	psub_where(p, p->addr.host, p->addr.port);
	p->backoff.min = opts->reconnect_min;
	p->backoff.max = opts->reconnect_max;
	ev_io_init(&p->io, psub_io_cb, -1, 0);
	p->io.data = p;
	ev_timer_init(&p->timer, psub_timer_cb, 0, 0);
	p->timer.data = p;
	return p;
}

void
redis_psub_start(struct redis_psub *p)
{
	if (p->state == REDIS_PSUB_STOPPED)
		psub_connect(p);
}

void
redis_psub_reconnect(struct redis_psub *p, const char *why)
{
	if (p->state == REDIS_PSUB_STOPPED)
		return;
	backoff_reset(&p->backoff);
	psub_retry(p, why, false, true);
}

void
redis_psub_free(struct redis_psub *p)
{
	if (p == NULL)
		return;
	psub_set_state(p, REDIS_PSUB_STOPPED);
	psub_close_link(p);
	redis_nodes_free(&p->nodes);
	free(p->name);
	free(p->channel);
	free(p->client_name);
	redis_addr_free(&p->addr);
	free(p);
}

enum redis_psub_state
redis_psub_state(const struct redis_psub *p)
{
	return p->state;
}

const char *
redis_psub_where(const struct redis_psub *p)
{
	return p->where;
}

unsigned long
redis_psub_resubscriptions(const struct redis_psub *p)
{
	return p->resubscriptions;
}
