/*
 * Which server a redis_conn talks to, and whether it may write there:
 * the Sentinel part (the master's address before each connect, and a
 * reconnect on +switch-master) and, for a link that writes (opts.writes),
 * the checks of the server itself.
 *
 * At each connect, before READY, the handshake reads INFO server
 * replication and ROLE. ROLE must say master: a replica is refused (its
 * writes would fail, or, for PUBLISH, reach nobody), and so is a
 * sentinel. INFO gives run_id and the replication ids, which the rule
 * of redis_history compares with what this link saw before: a Redis
 * restarted without its data, from an older snapshot, or a promoted
 * replica that lagged may have forgotten writes it acknowledged. The
 * owner hears of that as REDIS_CONN_EVENT_FORGOT, after READY.
 *
 * The offset the rule compares comes from ROLE replies read after writes:
 * Redis answers in order, so the offset in a ROLE reply covers every
 * write acknowledged before it. The link sends one when its pipeline
 * drains, and at least every 100 ms while replies keep coming. Replies
 * that came after the last ROLE are not covered: when the link goes with
 * some, anything but the same process at the next connect counts as a
 * break (conservative).
 *
 * A server that refuses ROLE or INFO (ACLs, a managed Redis) is written
 * to all the same, with one warning that the check is off.
 */
#include "lib/redis_conn_int.h"
#include "lib/log.h"
#include "lib/redis_sentinel.h"
#include "lib/xalloc.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROLE_EVERY 0.1		/* seconds between ROLEs under load */

/* ROLE or INFO refused: the check is off, with one warning per link. */
static void
role_check_off(struct redis_conn *c, const char *what, const char *err)
{
	c->info_ok = false;
	if (strcmp(what, "ROLE") == 0)
		c->role_off = true;
	if (c->check_warned)
		return;
	c->check_warned = true;
	log_warnx("%s: %s refused on %s (%s): writing without checking that "
	    "it is a master, nor whether it forgot acknowledged writes (allow "
	    "ROLE and INFO to the user to have both)", c->name, what,
	    redis_conn_where(c), err);
}

static void
role_info_cb(void *arg, redisReply *reply, void *privdata)
{
	struct redis_conn *c = privdata;

	if (reply->type == REDIS_REPLY_ERROR) {
		role_check_off(c, "INFO", reply->str);
		return;
	}
	c->info_ok = reply->type == REDIS_REPLY_STRING &&
	    redis_info_parse(reply->str, reply->len, &c->info) == 0;
	if (!c->info_ok)
		log_warnx("%s: cannot read INFO server replication of %s; the "
		    "check for forgotten writes is off for this connection",
		    c->name, redis_conn_where(c));
}

/* A replica, or a sentinel, at connect: say so and go. */
static void
role_refuse(struct redis_conn *c, const redisReply *reply)
{
	char why[300];

	if (reply->elements >= 3 && reply->element[1]->type ==
	    REDIS_REPLY_STRING && reply->element[2]->type ==
	    REDIS_REPLY_INTEGER && c->sentinel == NULL)
		snprintf(why, sizeof(why), "%s is a replica of %s:%lld: pginval "
		    "writes only to a master (fix url)", redis_conn_where(c),
		    reply->element[1]->str, reply->element[2]->integer);
	else if (c->sentinel != NULL)
		snprintf(why, sizeof(why), "%s is a replica; asking the "
		    "sentinels again", redis_conn_where(c));
	else
		snprintf(why, sizeof(why), "%s is not a master (ROLE %s): "
		    "pginval writes only to a master (fix url)",
		    redis_conn_where(c), reply->element[0]->str);
	redis_conn_close(c, why);
}

/* The history rule, once ROLE said master. */
static void
role_judge(struct redis_conn *c)
{
	enum redis_history_verdict v;
	char why[200];

	if (!c->info_ok)
		return;
	v = redis_history_check(&c->history, &c->info, why, sizeof(why));
	if (v == REDIS_HISTORY_CONTINUED && c->history.unconfirmed) {
		/* Replies after the last ROLE: their writes are covered by
		 * no offset, so only the same process surely has them. */
		snprintf(c->forgot_why, sizeof(c->forgot_why), "writes were "
		    "acknowledged after the last offset read, and %s", why);
		v = REDIS_HISTORY_BROKEN;
	} else if (v == REDIS_HISTORY_BROKEN) {
		snprintf(c->forgot_why, sizeof(c->forgot_why), "%s", why);
	}
	if (v == REDIS_HISTORY_BROKEN) {
		/* Told at READY, however many connects that takes: the
		 * history below is learnt now. */
		c->forgot = true;
		c->forgot_mark = redis_history_kept(&c->history, &c->info);
		log_warnx("%s: %s may have forgotten writes it acknowledged: %s",
		    c->name, redis_conn_where(c), c->forgot_why);
	} else {
		log_debug("%s: history of %s: %s (%s)", c->name,
		    redis_conn_where(c), redis_history_name(v), why);
	}
	redis_history_learn(&c->history, &c->info);
	c->history.unconfirmed = false;
}

static void
role_step_cb(void *arg, redisReply *reply, void *privdata)
{
	struct redis_conn *c = privdata;
	bool master;
	long long offset;

	if (reply->type == REDIS_REPLY_ERROR) {
		role_check_off(c, "ROLE", reply->str);
		return;
	}
	if (redis_role_offset(reply, &master, &offset) == -1) {
		if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
		    reply->element[0]->type == REDIS_REPLY_STRING) {
			role_refuse(c, reply);	/* a sentinel */
			return;
		}
		role_check_off(c, "ROLE", "an answer that is not a role");
		return;
	}
	if (!master) {
		role_refuse(c, reply);
		return;
	}
	c->role_off = false;
	role_judge(c);
}

void
redis_conn_role_steps(struct redis_conn *c)
{
	const char *info[] = { "INFO", "server", "replication" };
	const char *role[] = { "ROLE" };

	c->info_ok = false;
	c->role_inflight = false;
	c->acked_since_role = 0;
	redis_conn_step(c, "INFO", true, role_info_cb, c, 3, info, NULL);
	redis_conn_step(c, "ROLE", true, role_step_cb, c, 1, role, NULL);
}

void
redis_conn_close(struct redis_conn *c, const char *why)
{
	if (c->ac == NULL || c->closing)
		return;
	c->closing = true;
	c->handshake = 0;
	snprintf(c->close_why, sizeof(c->close_why), "%s", why);
	redisAsyncDisconnect(c->ac);
}

void
redis_conn_demoted(struct redis_conn *c, const char *how)
{
	char why[400];

	snprintf(why, sizeof(why), "%.200s is a replica now (%s); %s",
	    redis_conn_where(c), how, c->sentinel ? "asking the sentinels "
	    "again" : "reconnecting");
	redis_conn_close(c, why);
}

/* The reply to a ROLE sent after writes. */
static void
role_after_cb(void *arg, redisReply *reply, void *privdata)
{
	struct redis_conn *c = privdata;
	bool master;
	long long offset;

	c->role_inflight = false;
	if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
		return;
	if (redis_role_offset(reply, &master, &offset) == -1)
		return;
	if (!master) {
		redis_conn_demoted(c, "ROLE");
		return;
	}
	/* Every reply before this one is covered by offset. */
	c->acked_since_role = 0;
	if (c->history.known)
		redis_history_confirm(&c->history, offset,
		    c->o.mark != NULL ? *c->o.mark : 0);
}

void
redis_conn_role_after(struct redis_conn *c)
{
	const char *argv[] = { "ROLE" };
	struct redis_conn_cmd *cmd;

	if (c->role_off || c->role_inflight || c->closing || c->ac == NULL ||
	    c->state != REDIS_STATE_READY)
		return;
	if (c->outstanding > 0 &&
	    ev_now(c->loop) - c->role_sent_at < ROLE_EVERY)
		return;
	cmd = xcalloc(1, sizeof(*cmd));
	cmd->fn = role_after_cb;
	cmd->privdata = c;
	cmd->internal = true;
	if (redis_conn_send(c, cmd, 1, argv, NULL) == 0) {
		c->role_inflight = true;
		c->role_sent_at = ev_now(c->loop);
	}
}

void
redis_conn_mark(struct redis_conn *c)
{
	/* Every reply so far is covered by the last ROLE's offset: the
	 * owner's mark holds there too. */
	if (c->o.mark != NULL && c->history.known && !c->history.unconfirmed &&
	    !c->role_off && !c->role_inflight && c->acked_since_role == 0 &&
	    c->state == REDIS_STATE_READY)
		redis_history_confirm(&c->history, c->history.confirmed,
		    *c->o.mark);
}

void
redis_conn_role_lost(struct redis_conn *c)
{
	if (c->acked_since_role > 0)
		c->history.unconfirmed = true;
	c->acked_since_role = 0;
	c->role_inflight = false;
}

/* -- the history, for a router -------------------------------------------- */

const struct redis_history *
redis_conn_history(const struct redis_conn *c)
{
	return &c->history;
}

void
redis_conn_set_history(struct redis_conn *c, const struct redis_history *h)
{
	c->history = *h;
}

const char *
redis_conn_forgot_reason(const struct redis_conn *c)
{
	return c->forgot ? c->forgot_why : NULL;
}

uint64_t
redis_conn_forgot_mark(const struct redis_conn *c)
{
	return c->forgot ? c->forgot_mark : 0;
}

/* -- Sentinel ----------------------------------------------------------- */

/* The sentinels answered: the master's address, or none. */
static void
redis_conn_resolved(void *arg, const char *host, int port)
{
	struct redis_conn *c = arg;

	if (c->state != REDIS_STATE_CONNECTING || c->ac != NULL)
		return;
	if (host == NULL) {
		redis_conn_lost(c, "no sentinel gave its address");
		return;
	}
	free(c->master_host);
	c->master_host = xstrdup(host);
	c->master_port = port;
	redis_hostport_format(host, port, c->master_where,
	    sizeof(c->master_where));
	redis_conn_dial(c, host, port);
}

/* +switch-master: the link goes to the new master, through the
 * sentinels, which have switched too. */
static void
redis_conn_switched(void *arg, const char *host, int port)
{
	struct redis_conn *c = arg;

	if (c->state == REDIS_STATE_STOPPED || c->state == REDIS_STATE_BACKOFF)
		return;	/* the next connect asks the sentinels */
	if (c->ac == NULL) {
		redis_sentinel_resolve(c->sentinel, redis_conn_resolved);
		return;	/* an answer from before the switch is replaced */
	}
	if (c->master_host != NULL && strcmp(c->master_host, host) == 0 &&
	    c->master_port == port)
		return;
	backoff_reset(&c->backoff);
	redis_conn_drop(c, "the master switched; asking the sentinels again");
}

/* A Sentinel setup gets its sentinel finder; any other none. */
void
redis_conn_sentinel(struct redis_conn *c)
{
	struct redis_sentinel_opts so = {
		.name = c->name, .addr = &c->addr,
		.timeout = c->o.connect_timeout,
		.reconnect_min = c->o.reconnect_min,
		.reconnect_max = c->o.reconnect_max,
	};

	redis_sentinel_free(c->sentinel);
	c->sentinel = NULL;
	if (c->addr.nsentinels == 0)
		return;
	c->sentinel = redis_sentinel_new(c->loop, &so, c);
	snprintf(c->master_where, sizeof(c->master_where), "master \"%s\"",
	    c->addr.master);
	if (c->state != REDIS_STATE_STOPPED)
		redis_sentinel_follow(c->sentinel, redis_conn_switched);
}

void
redis_conn_resolve(struct redis_conn *c)
{
	redis_sentinel_resolve(c->sentinel, redis_conn_resolved);
}

void
redis_conn_follow(struct redis_conn *c)
{
	if (c->sentinel != NULL)
		redis_sentinel_follow(c->sentinel, redis_conn_switched);
}
