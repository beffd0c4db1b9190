/*
 * pginval check --connect, the Redis side: where the server is (asking
 * the sentinels, or every master of a cluster), that pginval may log in,
 * write (a master) and publish there, and that the stream key is a
 * stream. The same checks, one function per topology, then run for each
 * [target NAME] that pginval apply writes to, with what would stop apply
 * as the problems: the channel and its stream are [redis]'s alone.
 */
#include "run/check_int.h"
#include "lib/buf.h"
#include "lib/keys.h"
#include "lib/redis_sentinel.h"
#include "lib/redis_slots.h"

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

/* One Redis to check: [redis], or a [target NAME] of pginval apply. */
struct check_side {
	const struct config *cfg;
	const struct redis_addr *a;	/* where, the topology, the login */
	const char *name;	/* "redis", "target eu": heads its problems */
	const char *section;	/* "[redis]", "[target eu]": for the fixes */
	const char *writer;	/* "pginval", "pginval apply" */
	bool channel;		/* [redis]: the channel and the stream too */
};

/* A problem of side s: "NAME: " and the text. */
static int __attribute__((format(printf, 3, 4)))
side_problem(const struct check_side *s, FILE *out, const char *fmt, ...)
{
	char text[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	return check_problem(out, "%s: %s", s->name, text);
}

/* An ok line of side s: a target's carry its name, [redis]'s as ever. */
static void __attribute__((format(printf, 3, 4)))
side_ok(const struct check_side *s, FILE *out, const char *fmt, ...)
{
	char text[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	check_ok(out, "%s%s%s", s->channel ? "" : s->name,
	    s->channel ? "" : ": ", text);
}

/* With sentinels: where the first one that knows says the master is. */
static int
check_sentinels(const struct check_side *s, FILE *out, char *host,
    size_t hostlen, int *port)
{
	const struct redis_addr *a = s->a;
	struct buf said = { 0 };
	char where[300], why[300];
	int problems = 0;

	for (size_t i = 0; i < a->nsentinels; i++) {
		redis_hostport_format(a->sentinels[i].host,
		    a->sentinels[i].port, where, sizeof(where));
		if (redis_sentinel_ask(a, i, 2, host, hostlen, port, why,
		    sizeof(why)) == 0) {
			side_ok(s, out, "sentinel %s: master \"%s\" is at "
			    "%s:%d", where, a->master, host, *port);
			goto done;
		}
		buf_adds(&said, said.len ? "; " : "");
		buf_adds(&said, where);
		buf_adds(&said, ": ");
		buf_adds(&said, why);
	}
	problems = side_problem(s, out, "no sentinel gave the address of "
	    "master \"%s\" (%s); fix sentinels, master or sentinel_password "
	    "in %s", a->master, said.data ? said.data : "", s->section);
done:
	buf_free(&said);
	return problems;
}

/* [redis] stream is a stream, or no key yet. */
static int
check_stream(const struct check_side *s, redisContext *c, const char *where,
    FILE *out)
{
	const struct config *cfg = s->cfg;
	redisReply *r;
	int problems = 0;

	if (!s->channel || cfg->redis_stream == NULL)
		return 0;
	r = redisCommand(c, "TYPE %s", cfg->redis_stream);
	if (r == NULL || r->type != REDIS_REPLY_STATUS ||
	    (strcmp(r->str, "none") != 0 && strcmp(r->str, "stream") != 0))
		problems = side_problem(s, out, "[redis] stream \"%s\" is "
		    "%s on %s, not a stream; choose another key, or delete it",
		    cfg->redis_stream, r && r->str ? r->str : c->errstr, where);
	freeReplyObject(r);
	return problems;
}

/* ROLE: pginval, and apply, write only to a master. */
static int
check_role(const struct check_side *s, redisContext *c, const char *where,
    FILE *out)
{
	redisReply *r = redisCommand(c, "ROLE");
	int problems = 0;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
	    r->element[0]->type != REDIS_REPLY_STRING)
		side_ok(s, out, "ROLE refused on %s; %s will write without "
		    "checking that it is a master", where, s->writer);
	else if (strcmp(r->element[0]->str, "master") == 0)
		side_ok(s, out, "redis %s is a master", where);
	else
		problems = side_problem(s, out, "%s is a %s, not a master: %s "
		    "writes only to a master; fix %s url", where,
		    strcmp(r->element[0]->str, "slave") == 0 ? "replica" :
		    r->element[0]->str, s->writer, s->section);
	freeReplyObject(r);
	return problems;
}

/* Connects to host:port and logs in as the url says; NULL with a problem
 * printed. */
static redisContext *
check_login(const struct check_side *s, const char *host, int port,
    const char *where, FILE *out, int *problems)
{
	const struct redis_addr *a = s->a;
	struct timeval tv = { 5, 0 };
	redisContext *c;
	redisReply *r;

	c = host[0] != '\0' ? redisConnectWithTimeout(host, port, tv) :
	    redisConnectUnixWithTimeout(a->unix_path, tv);
	if (c == NULL || c->err) {
		*problems += side_problem(s, out, "cannot connect to %s: %s; "
		    "fix %s url in %s", where, c ? c->errstr : "out of memory",
		    s->section, s->cfg->path);
		redisFree(c);
		return NULL;
	}
	redisSetTimeout(c, tv);
	if (a->password == NULL)
		return c;
	r = a->user ? redisCommand(c, "AUTH %s %s", a->user, a->password) :
	    redisCommand(c, "AUTH %s", a->password);
	if (r == NULL || r->type == REDIS_REPLY_ERROR) {
		*problems += side_problem(s, out, "AUTH failed on %s: %s; fix "
		    "the user and password in %s url", where,
		    r ? r->str : c->errstr, s->section);
		freeReplyObject(r);
		redisFree(c);
		return NULL;
	}
	freeReplyObject(r);
	return c;
}

/* "host:port" of a node of a valid CLUSTER SLOTS reply; a host it does
 * not give is the seed's. */
static void
check_node_where(const redisReply *n, const char *seed, char *out,
    size_t outlen)
{
	const redisReply *h = n->element[0];

	redis_hostport_format(h->type == REDIS_REPLY_STRING && h->len > 0 &&
	    strcmp(h->str, "?") != 0 ? h->str : seed,
	    (int)n->element[1]->integer, out, outlen);
}

/* Each master of a map, with its slots as ranges. */
static void
check_masters(const struct check_side *s, const struct redis_slot_map *m,
    FILE *out)
{
	char where[300], range[32];

	for (size_t i = 0; i < m->nmasters; i++) {
		struct buf ranges = { 0 };
		int from = -1;

		for (int s2 = 0; s2 <= REDIS_SLOTS; s2++) {
			bool mine = s2 < REDIS_SLOTS && m->owner[s2] == i;

			if (mine && from < 0)
				from = s2;
			if (!mine && from >= 0) {
				if (s2 - 1 > from)
					snprintf(range, sizeof(range), "%s%d-%d",
					    ranges.len ? "," : "", from, s2 - 1);
				else
					snprintf(range, sizeof(range), "%s%d",
					    ranges.len ? "," : "", from);
				buf_adds(&ranges, range);
				from = -1;
			}
		}
		redis_hostport_format(m->masters[i].host, m->masters[i].port,
		    where, sizeof(where));
		side_ok(s, out, "cluster master %s, slots %s, %zu replica%s",
		    where, ranges.data, m->masters[i].nreplicas,
		    m->masters[i].nreplicas == 1 ? "" : "s");
		buf_free(&ranges);
	}
}

/* Each replica that a valid CLUSTER SLOTS reply lists, once, with its
 * master. */
static void
check_replicas(const struct check_side *s, const redisReply *r, FILE *out)
{
	const char *seed = s->a->host;
	struct keys seen = { 0 };
	char where[300], of[300];

	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i];

		for (size_t j = 3; j < e->elements; j++) {
			size_t before = seen.n;

			check_node_where(e->element[j], seed, where,
			    sizeof(where));
			keys_add(&seen, where, strlen(where));
			if (seen.n == before)
				continue;
			check_node_where(e->element[2], seed, of, sizeof(of));
			side_ok(s, out, "cluster replica %s of %s", where, of);
		}
	}
	keys_free(&seen);
}

/* [redis] in a cluster: the channel's master, where the daemon publishes
 * (and appends to the stream, which shares the slot). */
static int
check_channel_owner(const struct check_side *s,
    const struct redis_slot_map *m, FILE *out)
{
	const struct config *cfg = s->cfg;
	const char *cmd = s->a->cluster == REDIS_CLUSTER_ON ? "SPUBLISH" :
	    "PUBLISH";
	unsigned slot = redis_keyslot(cfg->redis_channel,
	    strlen(cfg->redis_channel));
	const struct redis_node *owner = &m->masters[m->owner[slot]];
	redisContext *c;
	redisReply *r;
	char where[300];
	int problems = 0;

	redis_hostport_format(owner->host, owner->port, where, sizeof(where));
	if ((c = check_login(s, owner->host, owner->port, where, out,
	    &problems)) == NULL)
		return problems;
	r = redisCommand(c, "%s %s %s", cmd, cfg->redis_channel, "");
	if (r == NULL || r->type == REDIS_REPLY_ERROR)
		problems += side_problem(s, out, "cannot %s on %s: %s; fix the "
		    "user's ACL", cmd, where, r ? r->str : c->errstr);
	else
		side_ok(s, out, "channel \"%s\" (slot %u) is served by %s",
		    cfg->redis_channel, slot, where);
	freeReplyObject(r);
	if (problems == 0)
		problems += check_stream(s, c, where, out);
	redisFree(c);
	return problems;
}

/* A cluster: every master and its slots, and every replica, from the
 * seed's CLUSTER SLOTS; then, for [redis], the channel's master. */
static int
check_cluster(const struct check_side *s, redisContext *seed, FILE *out)
{
	struct redis_slot_map m = { 0 };
	redisReply *r = redisCommand(seed, "CLUSTER SLOTS");
	char err[256];
	int problems = 0;

	if (r == NULL || r->type == REDIS_REPLY_ERROR ||
	    redis_slots_parse(&m, r, s->a->host, err, sizeof(err)) == -1) {
		problems = side_problem(s, out, "CLUSTER SLOTS on %s: %s; "
		    "is it a cluster? (cluster = off in %s for a single Redis)",
		    s->a->where, r == NULL ? seed->errstr :
		    r->type == REDIS_REPLY_ERROR ? r->str : err, s->section);
		goto done;
	}
	check_masters(s, &m, out);
	check_replicas(s, r, out);
	if (s->channel)
		problems = check_channel_owner(s, &m, out);
done:
	freeReplyObject(r);
	redis_slots_free(&m);
	return problems;
}

/* A single Redis, found or not by the sentinels: a master, its database,
 * and for [redis] PUBLISH and the stream. */
static int
check_single(const struct check_side *s, redisContext *c, const char *where,
    FILE *out)
{
	redisReply *r = NULL;
	int problems;

	if ((problems = check_role(s, c, where, out)) > 0)
		goto done;
	r = redisCommand(c, "SELECT %d", s->a->db);
	if (r == NULL || r->type == REDIS_REPLY_ERROR) {
		problems += side_problem(s, out, "SELECT %d failed on %s: %s",
		    s->a->db, where, r ? r->str : c->errstr);
		goto done;
	}
	if (s->channel) {
		freeReplyObject(r);
		r = redisCommand(c, "PUBLISH %s %s", "pginval-check", "ping");
		if (r == NULL || r->type == REDIS_REPLY_ERROR) {
			problems += side_problem(s, out, "cannot PUBLISH "
			    "on %s: %s; fix the user's ACL", where,
			    r ? r->str : c->errstr);
			goto done;
		}
	}
	if ((problems = check_stream(s, c, where, out)) > 0)
		goto done;
	side_ok(s, out, "connected to redis %s, database %d", where, s->a->db);
done:
	freeReplyObject(r);
	return problems;
}

/* One side, whatever its topology. */
static int
check_side(const struct check_side *s, FILE *out)
{
	const struct redis_addr *a = s->a;
	redisContext *c;
	int problems = 0, port = a->port;
	char host[256], where[300];

	snprintf(host, sizeof(host), "%s", a->host ? a->host : "");
	snprintf(where, sizeof(where), "%s", a->where);
	if (a->nsentinels > 0) {
		if (check_sentinels(s, out, host, sizeof(host), &port))
			return 1;
		redis_hostport_format(host, port, where, sizeof(where));
	}
	if ((c = check_login(s, host, port, where, out, &problems)) == NULL)
		return problems;
	if (a->cluster != REDIS_CLUSTER_OFF)
		problems = check_cluster(s, c, out);
	else
		problems = check_single(s, c, where, out);
	redisFree(c);
	return problems;
}

int
check_redis(const struct config *cfg, FILE *out)
{
	struct check_side s = { .cfg = cfg, .a = &cfg->redis, .name = "redis",
	    .section = "[redis]", .writer = "pginval", .channel = true };
	int problems = check_side(&s, out);

	for (size_t i = 0; i < cfg->ntargets; i++) {
		const struct apply_target_cfg *t = &cfg->targets[i];
		char name[300], section[300];

		snprintf(name, sizeof(name), "target %s", t->name);
		snprintf(section, sizeof(section), "[target %s]", t->name);
		s = (struct check_side){ .cfg = cfg, .a = &t->addr,
		    .name = name, .section = section,
		    .writer = "pginval apply", .channel = false };
		check_heading(out, "%s", section);
		problems += check_side(&s, out);
	}
	return problems;
}
