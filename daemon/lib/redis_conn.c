/*
 * A hiredis async connection driven by libev. hiredis 0.14 has no
 * timeouts of its own, so a timer bounds the connect (and backs off
 * between attempts) and a tick sends the health PING and drops a link
 * whose oldest command has waited longer than command_timeout.
 *
 * Every command carries a small record of its own as hiredis privdata:
 * it counts the command until its reply, routes handshake replies here,
 * and passes the rest to the owner's callback with the owner's privdata.
 *
 * hiredis rules followed here: the context is never freed inside its own
 * connect or disconnect callback (a reply callback may ask for a
 * disconnect); a failed connect reports only through the connect
 * callback; pending replies arrive as NULL before the disconnect
 * callback runs, which is how owners get back what they had in flight;
 * the context is freed after the disconnect callback returns, so the
 * pointer to it is cleared there.
 */
#include "lib/redis_conn_int.h"
#include "lib/redis_sentinel.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/sock.h"
#include "lib/xalloc.h"

#include <ev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void redis_conn_connect(struct redis_conn *c);

static const char *const redis_state_names[] = {
	[REDIS_STATE_STOPPED] = "stopped",
	[REDIS_STATE_CONNECTING] = "connecting",
	[REDIS_STATE_HANDSHAKE] = "handshake",
	[REDIS_STATE_READY] = "ready",
	[REDIS_STATE_BACKOFF] = "backoff",
};

const char *
redis_state_name(enum redis_state st)
{
	return redis_state_names[st];
}

static void
redis_conn_set_state(struct redis_conn *c, enum redis_state st)
{
	if (c->state == st)
		return;
	log_debug("%s: %s -> %s", c->name, redis_state_names[c->state],
	    redis_state_names[st]);
	c->state = st;
}

/*
 * The link is gone (or was never made). ac has already been freed or is
 * being freed by hiredis, and pending replies have come back NULL; only
 * the bookkeeping is left.
 */
void
redis_conn_lost(struct redis_conn *c, const char *why)
{
	bool was_up = c->state == REDIS_STATE_READY ||
	    c->state == REDIS_STATE_HANDSHAKE;
	double delay;

	ev_timer_stop(c->loop, &c->timer);
	ev_timer_stop(c->loop, &c->tick);
	c->ac = NULL;
	c->outstanding = 0;
	c->handshake = 0;
	redis_conn_role_lost(c);
	if (c->closing)
		why = c->close_why;
	c->closing = false;
	if (c->state == REDIS_STATE_STOPPED)
		return;
	c->cb(c->arg, REDIS_CONN_EVENT_CLOSED);
	/* Only a link that lasted clears the backoff: a server that lets
	 * us in and then misbehaves is not dialled at full speed. */
	if (c->established &&
	    ev_now(c->loop) - c->established_at >= c->o.connect_timeout)
		backoff_reset(&c->backoff);
	c->established = false;
	delay = backoff_next(&c->backoff);
	if (c->o.backlog != NULL)
		log_warnx("%s: %s (%s); %zu %s queued, retrying in %.1fs",
		    c->name, why, redis_conn_where(c), *c->o.backlog,
		    c->o.backlog_unit, delay);
	else
		log_warnx("%s: %s (%s); retrying in %.1fs", c->name, why,
		    redis_conn_where(c), delay);
	redis_conn_set_state(c, REDIS_STATE_BACKOFF);
	ev_timer_set(&c->timer, delay, 0);
	ev_timer_start(c->loop, &c->timer);
	if (was_up)
		c->cb(c->arg, REDIS_CONN_EVENT_LOST);
}

/* Drops the link from outside its own hiredis callbacks. */
void
redis_conn_drop(struct redis_conn *c, const char *why)
{
	redisAsyncContext *ac = c->ac;

	c->ac = NULL;	/* the disconnect callback sees it is expected */
	if (ac != NULL)
		redisAsyncFree(ac);
	redis_conn_lost(c, why);
}

/* The link works: READY, or a subscriber's first reply. */
static void
redis_conn_established(struct redis_conn *c)
{
	ev_timer_stop(c->loop, &c->timer);
	c->established_at = ev_now(c->loop);
	if (c->ever_established)
		c->reconnects++;
	c->ever_established = c->established = true;
}

static void
redis_conn_become_ready(struct redis_conn *c)
{
	redis_conn_set_state(c, REDIS_STATE_READY);
	if (!c->o.subscriber)
		redis_conn_established(c);
	c->cb(c->arg, REDIS_CONN_EVENT_READY);
	/* After READY, so that what the owner does about it (a reset)
	 * can be sent at once. */
	if (c->forgot && c->state == REDIS_STATE_READY) {
		c->cb(c->arg, REDIS_CONN_EVENT_FORGOT);
		c->forgot = false;
	}
}

/* A handshake step answered. */
static void
redis_conn_step_reply(struct redis_conn *c, redisAsyncContext *ac,
    const struct redis_conn_cmd *cmd, redisReply *reply)
{
	if (c->handshake <= 0)
		return;	/* an earlier step failed; disconnecting */
	if (reply->type == REDIS_REPLY_ERROR && cmd->optional) {
		/* Only a convenience (an ACL may forbid it), or a check that
		 * its callback turns off. */
		log_debug("%s: %s refused: %s", c->name, cmd->step, reply->str);
		if (cmd->fn != NULL)
			cmd->fn(c->arg, reply, cmd->privdata);
	} else if (reply->type == REDIS_REPLY_ERROR) {
		log_error("%s: %s failed on %s: %s", c->name, cmd->step,
		    redis_conn_where(c), reply->str);
		/* Allowed from a reply callback; the disconnect callback
		 * then schedules the retry. */
		c->handshake = 0;
		redisAsyncDisconnect(ac);
		return;
	} else if (cmd->fn != NULL) {
		cmd->fn(c->arg, reply, cmd->privdata);
	}
	if (c->handshake > 0 && --c->handshake == 0 && !c->closing)
		redis_conn_become_ready(c);
}

static void
redis_conn_reply(redisAsyncContext *ac, void *r, void *privdata)
{
	struct redis_conn *c = ac->data;
	struct redis_conn_cmd *cmd = privdata;
	redisReply *reply = r;

	if (reply == NULL) {
		/* The link went first. A handshake step has nothing to undo;
		 * the owner's commands go back to it. */
		if (cmd->fn != NULL && cmd->step == NULL)
			cmd->fn(c->arg, NULL, cmd->privdata);
		free(cmd);
		return;
	}
	redis_cap_next(&c->cap);
	if (c->outstanding > 0)
		c->outstanding--;
	c->progress_at = ev_now(c->loop);
	if (cmd->step != NULL) {
		redis_conn_step_reply(c, ac, cmd, reply);
	} else if (!c->o.subscriber && (c->closing ||
	    (reply->type == REDIS_REPLY_ERROR &&
	    strncmp(reply->str, "READONLY", 8) == 0))) {
		/* Demoted under us: as if the link had gone first, so the
		 * owner sends it again after the reconnect. */
		if (!c->closing)
			redis_conn_demoted(c, "READONLY");
		if (cmd->fn != NULL)
			cmd->fn(c->arg, NULL, cmd->privdata);
	} else {
		/* Counted first: the owner's mark may move in fn. */
		bool owned = c->o.writes && !cmd->internal && cmd->fn != NULL;

		if (!c->established)
			redis_conn_established(c);	/* a subscriber */
		if (owned)
			c->acked_since_role++;
		if (cmd->fn != NULL)
			cmd->fn(c->arg, reply, cmd->privdata);
		if (owned)
			redis_conn_role_after(c);
	}
	if (!cmd->persist)
		free(cmd);
}

int
redis_conn_send(struct redis_conn *c, struct redis_conn_cmd *cmd, int argc,
    const char **argv, const size_t *argvlen)
{
	if (c->ac == NULL || redisAsyncCommandArgv(c->ac, redis_conn_reply, cmd,
	    argc, argv, argvlen) != REDIS_OK) {
		free(cmd);
		return -1;
	}
	if (c->outstanding++ == 0)
		c->progress_at = ev_now(c->loop);
	return 0;
}

static struct redis_conn_cmd *
redis_conn_cmd_new(redis_conn_reply_cb *fn, void *privdata)
{
	struct redis_conn_cmd *cmd = xcalloc(1, sizeof(*cmd));

	cmd->fn = fn;
	cmd->privdata = privdata;
	return cmd;
}

int
redis_conn_command(struct redis_conn *c, redis_conn_reply_cb *fn,
    void *privdata, int argc, const char **argv, const size_t *argvlen)
{
	struct redis_conn_cmd *cmd;

	if (c->state != REDIS_STATE_READY || c->closing)
		return -1;
	cmd = redis_conn_cmd_new(fn, privdata);
	cmd->persist = c->o.subscriber;
	return redis_conn_send(c, cmd, argc, argv, argvlen);
}

void
redis_conn_step(struct redis_conn *c, const char *what, bool optional,
    redis_conn_reply_cb *fn, void *privdata, int argc, const char **argv,
    const size_t *argvlen)
{
	struct redis_conn_cmd *cmd = redis_conn_cmd_new(fn, privdata);

	cmd->step = what;
	cmd->optional = optional;
	if (redis_conn_send(c, cmd, argc, argv, argvlen) == 0)
		c->handshake++;
}

void
redis_conn_handshake(struct redis_conn *c, const char *what,
    bool optional, redis_conn_reply_cb *fn, void *privdata, int argc,
    const char **argv, const size_t *argvlen)
{
	if (c->state == REDIS_STATE_HANDSHAKE)
		redis_conn_step(c, what, optional, fn, privdata, argc, argv,
		    argvlen);
}

void
redis_conn_disconnect(struct redis_conn *c)
{
	if (c->ac != NULL)
		redisAsyncDisconnect(c->ac);
}

/* Fine enough to honour both intervals to within a quarter. */
static double
redis_conn_tick_interval(const struct redis_conn *c)
{
	double t = c->o.command_timeout / 4;

	if (c->o.health_interval > 0 && c->o.health_interval / 2 < t)
		t = c->o.health_interval / 2;
	return t < 1 ? t : 1;
}

/* AUTH, SELECT and CLIENT SETNAME: the steps every owner needs. */
static void
redis_conn_steps(struct redis_conn *c)
{
	const char *argv[3];
	char db[16];

	if (c->addr.password != NULL) {
		int argc = 0;

		argv[argc++] = "AUTH";
		if (c->addr.user != NULL)
			argv[argc++] = c->addr.user;
		argv[argc++] = c->addr.password;
		redis_conn_step(c, "AUTH", false, NULL, NULL, argc, argv, NULL);
	}
	if (c->addr.db != 0) {
		snprintf(db, sizeof(db), "%d", c->addr.db);
		argv[0] = "SELECT";
		argv[1] = db;
		redis_conn_step(c, "SELECT", false, NULL, NULL, 2, argv, NULL);
	}
	if (c->client_name != NULL) {
		/* Named, so that operators can tell it apart in CLIENT LIST. */
		argv[0] = "CLIENT";
		argv[1] = "SETNAME";
		argv[2] = c->client_name;
		redis_conn_step(c, "CLIENT SETNAME", true, NULL, NULL, 3, argv,
		    NULL);
	}
	if (c->o.writes)
		redis_conn_role_steps(c);
}

static void
redis_conn_connect_cb(const redisAsyncContext *ac, int status)
{
	struct redis_conn *c = ac->data;

	if (c == NULL || c->ac != ac)
		return;
	if (status != REDIS_OK) {
		char why[256];

		snprintf(why, sizeof(why), "cannot connect: %s", ac->errstr);
		c->ac = NULL;	/* hiredis frees it after we return */
		redis_conn_lost(c, why);
		return;
	}
	/* A subscriber's timer also covers the handshake and the
	 * subscription's confirmation. */
	if (!c->o.subscriber)
		ev_timer_stop(c->loop, &c->timer);
	if (c->addr.host != NULL && c->o.keepalive > 0)
		sock_keepalive(ac->c.fd, c->o.keepalive);
	c->handshake = 0;
	c->established = false;
	c->closing = false;
	redis_conn_set_state(c, REDIS_STATE_HANDSHAKE);
	if (!c->o.subscriber) {
		ev_timer_set(&c->tick, redis_conn_tick_interval(c),
		    redis_conn_tick_interval(c));
		ev_timer_start(c->loop, &c->tick);
	}
	redis_conn_steps(c);
	c->cb(c->arg, REDIS_CONN_EVENT_HANDSHAKE);
	if (c->state == REDIS_STATE_HANDSHAKE && c->handshake == 0)
		redis_conn_become_ready(c);
}

static void
redis_conn_disconnect_cb(const redisAsyncContext *ac, int status)
{
	struct redis_conn *c = ac->data;
	char why[256];

	if (c == NULL || c->ac != ac)
		return;	/* we freed it ourselves */
	if (c->cap.over)
		snprintf(why, sizeof(why), "connection lost: a reply over %d "
		    "bytes (not a Redis server pginval can use?)",
		    REDIS_CONN_REPLY_MAX);
	else
		snprintf(why, sizeof(why), "connection lost: %s",
		    status == REDIS_OK ? "closed" : ac->errstr);
	c->ac = NULL;	/* hiredis frees it after we return */
	redis_conn_lost(c, why);
}

static void
redis_conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct redis_conn *c = w->data;

	if (c->state == REDIS_STATE_BACKOFF)
		redis_conn_connect(c);
	else if (c->state != REDIS_STATE_STOPPED)
		redis_conn_drop(c, "timed out connecting");
}

static void
redis_conn_tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct redis_conn *c = w->data;
	const char *ping[] = { "PING" };

	/* An idle link is proved alive with a PING, so that a dead one is
	 * found by the command timeout below, not by the next command. */
	if (c->state == REDIS_STATE_READY && c->outstanding == 0 &&
	    c->o.health_interval > 0 &&
	    ev_now(loop) - c->progress_at >= c->o.health_interval)
		(void)redis_conn_send(c, redis_conn_cmd_new(NULL, NULL), 1, ping,
		    NULL);
	/* A bulk string waits whole in the buffer before the reader makes
	 * an object of it: the cap sees it here, once a tick. */
	if (c->ac != NULL &&
	    redis_cap_pending(c->ac->c.reader) > REDIS_CONN_REPLY_MAX) {
		char why[96];

		snprintf(why, sizeof(why), "a reply over %d bytes (not a Redis "
		    "server pginval can use?)", REDIS_CONN_REPLY_MAX);
		redis_conn_drop(c, why);
		return;
	}
	if (c->ac != NULL && c->outstanding > 0 &&
	    ev_now(loop) - c->progress_at > c->o.command_timeout) {
		char why[96];

		snprintf(why, sizeof(why), "no reply for %.1fs",
		    ev_now(loop) - c->progress_at);
		redis_conn_drop(c, why);
	}
}

/* Connects to host:port, or to the configured server when host is NULL. */
void
redis_conn_dial(struct redis_conn *c, const char *host, int port)
{
	redisAsyncContext *ac;

	/* Note: a host name is resolved with a blocking getaddrinfo. */
	if (host == NULL) {
		host = c->addr.host;
		port = c->addr.port;
	}
	ac = host != NULL ? redisAsyncConnect(host, port) :
	    redisAsyncConnectUnix(c->addr.unix_path);
	if (ac == NULL || ac->err) {
		char why[256];

		snprintf(why, sizeof(why), "cannot connect: %s",
		    ac ? ac->errstr : "out of memory");
		if (ac != NULL)
			redisAsyncFree(ac);
		redis_conn_lost(c, why);
		return;
	}
	ac->data = c;
	c->ac = ac;
	c->cap.max = REDIS_CONN_REPLY_MAX;
	redis_cap_attach(&c->cap, ac->c.reader);
	if (redisLibevAttach(c->loop, ac) != REDIS_OK) {
		redis_conn_drop(c, "cannot attach to the event loop");
		return;
	}
	redisAsyncSetConnectCallback(ac, redis_conn_connect_cb);
	redisAsyncSetDisconnectCallback(ac, redis_conn_disconnect_cb);
	ev_timer_set(&c->timer, c->o.connect_timeout, 0);
	ev_timer_start(c->loop, &c->timer);
}

static void
redis_conn_connect(struct redis_conn *c)
{
	redis_conn_set_state(c, REDIS_STATE_CONNECTING);
	if (c->sentinel != NULL)
		redis_conn_resolve(c);
	else
		redis_conn_dial(c, NULL, 0);
}

static char *
dup_or_null(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

struct redis_conn *
redis_conn_new(struct ev_loop *loop, const struct redis_conn_opts *opts,
    redis_conn_cb *cb, void *arg)
{
	struct redis_conn *c = xcalloc(1, sizeof(*c));

	c->loop = loop;
	c->cb = cb;
	c->arg = arg;
	c->o = *opts;
	c->o.name = c->o.client_name = NULL;
	c->o.addr = NULL;
	c->name = xstrdup(opts->name);
	redis_addr_copy(&c->addr, opts->addr);
	c->client_name = dup_or_null(opts->client_name);
	c->backoff.min = opts->reconnect_min;
	c->backoff.max = opts->reconnect_max;
	ev_timer_init(&c->timer, redis_conn_timer_cb, 0, 0);
	c->timer.data = c;
	ev_timer_init(&c->tick, redis_conn_tick_cb, 1, 1);
	c->tick.data = c;
	redis_conn_sentinel(c);
	return c;
}

void
redis_conn_start(struct redis_conn *c)
{
	if (c->state != REDIS_STATE_STOPPED)
		return;
	redis_conn_follow(c);
	redis_conn_connect(c);
}

void
redis_conn_free(struct redis_conn *c)
{
	redisAsyncContext *ac;

	if (c == NULL)
		return;
	redis_conn_set_state(c, REDIS_STATE_STOPPED);
	ev_timer_stop(c->loop, &c->timer);
	ev_timer_stop(c->loop, &c->tick);
	if ((ac = c->ac) != NULL) {
		c->ac = NULL;
		redisAsyncFree(ac);	/* pending replies come back NULL */
	}
	redis_sentinel_free(c->sentinel);
	free(c->master_host);
	free(c->name);
	redis_addr_free(&c->addr);
	free(c->client_name);
	free(c);
}

void
redis_conn_tune(struct redis_conn *c, const struct redis_conn_opts *o)
{
	c->o.connect_timeout = o->connect_timeout;
	c->o.command_timeout = o->command_timeout;
	c->o.health_interval = o->health_interval;
	c->backoff.min = c->o.reconnect_min = o->reconnect_min;
	c->backoff.max = c->o.reconnect_max = o->reconnect_max;
}

bool
redis_conn_configure(struct redis_conn *c, const struct redis_conn_opts *o)
{
	bool moved = !redis_addr_same(&c->addr, o->addr);

	redis_addr_free(&c->addr);
	redis_addr_copy(&c->addr, o->addr);
	redis_conn_tune(c, o);
	if (!moved)
		return false;
	redis_conn_sentinel(c);
	if (c->state == REDIS_STATE_STOPPED)
		return false;
	backoff_reset(&c->backoff);
	if (c->ac != NULL || c->state == REDIS_STATE_CONNECTING)
		redis_conn_drop(c, "settings changed; reconnecting");
	/* Other servers: what was known of the old ones does not hold. */
	memset(&c->history, 0, sizeof(c->history));
	/* In backoff, the next attempt uses the new settings anyway. */
	return true;
}

bool
redis_conn_ready(const struct redis_conn *c)
{
	return c->state == REDIS_STATE_READY && c->ac != NULL && !c->closing;
}

enum redis_state
redis_conn_state(const struct redis_conn *c)
{
	return c->state;
}

const char *
redis_conn_where(const struct redis_conn *c)
{
	return c->sentinel != NULL ? c->master_where : c->addr.where;
}

unsigned long
redis_conn_reconnects(const struct redis_conn *c)
{
	return c->reconnects;
}
