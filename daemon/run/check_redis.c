/*
 * pginval check --connect, the Redis side: where the server is (asking
 * the sentinels, or every master of a cluster), that pginval may log in,
 * write (a master) and publish there, and that the stream key is a
 * stream.
 */
#include "run/check_int.h"
#include "lib/buf.h"
#include "lib/keys.h"
#include "lib/redis_sentinel.h"
#include "lib/redis_slots.h"

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

/* With sentinels: where the first one that knows says the master is. */
static int
check_sentinels(const struct redis_addr *a, FILE *out, char *host,
    size_t hostlen, int *port)
{
	struct buf said = { 0 };
	char where[300], why[300];
	int problems = 0;

	for (size_t i = 0; i < a->nsentinels; i++) {
		redis_hostport_format(a->sentinels[i].host,
		    a->sentinels[i].port, where, sizeof(where));
		if (redis_sentinel_ask(a, i, 2, host, hostlen, port, why,
		    sizeof(why)) == 0) {
			fprintf(out, "ok: sentinel %s: master \"%s\" is at "
			    "%s:%d\n", where, a->master, host, *port);
			goto done;
		}
		buf_adds(&said, said.len ? "; " : "");
		buf_adds(&said, where);
		buf_adds(&said, ": ");
		buf_adds(&said, why);
	}
	problems = check_problem(out, "redis: no sentinel gave the address of "
	    "master \"%s\" (%s); fix sentinels, master or sentinel_password",
	    a->master, said.data ? said.data : "");
done:
	buf_free(&said);
	return problems;
}

/* [redis] stream is a stream, or no key yet. */
static int
check_stream(const struct config *cfg, redisContext *c, const char *where,
    FILE *out)
{
	redisReply *r;
	int problems = 0;

	if (cfg->redis_stream == NULL)
		return 0;
	r = redisCommand(c, "TYPE %s", cfg->redis_stream);
	if (r == NULL || r->type != REDIS_REPLY_STATUS ||
	    (strcmp(r->str, "none") != 0 && strcmp(r->str, "stream") != 0))
		problems = check_problem(out, "redis: [redis] stream \"%s\" is "
		    "%s on %s, not a stream; choose another key, or delete it",
		    cfg->redis_stream, r && r->str ? r->str : c->errstr, where);
	freeReplyObject(r);
	return problems;
}

/* ROLE: pginval writes only to a master. */
static int
check_role(redisContext *c, const char *where, FILE *out)
{
	redisReply *r = redisCommand(c, "ROLE");
	int problems = 0;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
	    r->element[0]->type != REDIS_REPLY_STRING)
		fprintf(out, "ok: ROLE refused on %s; pginval will write "
		    "without checking that it is a master\n", where);
	else if (strcmp(r->element[0]->str, "master") == 0)
		fprintf(out, "ok: redis %s is a master\n", where);
	else
		problems = check_problem(out, "redis: %s is a %s, not a "
		    "master: pginval writes only to a master; fix [redis] url",
		    where, strcmp(r->element[0]->str, "slave") == 0 ?
		    "replica" : r->element[0]->str);
	freeReplyObject(r);
	return problems;
}

/* Connects to host:port and logs in as the url says; NULL with a problem
 * printed. */
static redisContext *
check_login(const struct config *cfg, const char *host, int port,
    const char *where, FILE *out, int *problems)
{
	struct timeval tv = { 5, 0 };
	redisContext *c;
	redisReply *r;

	c = host[0] != '\0' ? redisConnectWithTimeout(host, port, tv) :
	    redisConnectUnixWithTimeout(cfg->redis.unix_path, tv);
	if (c == NULL || c->err) {
		*problems += check_problem(out, "redis: cannot connect to %s: "
		    "%s; fix [redis] url in %s", where,
		    c ? c->errstr : "out of memory", cfg->path);
		redisFree(c);
		return NULL;
	}
	redisSetTimeout(c, tv);
	if (cfg->redis.password == NULL)
		return c;
	r = cfg->redis.user ? redisCommand(c, "AUTH %s %s", cfg->redis.user,
	    cfg->redis.password) : redisCommand(c, "AUTH %s",
	    cfg->redis.password);
	if (r == NULL || r->type == REDIS_REPLY_ERROR) {
		*problems += check_problem(out, "redis: AUTH failed on %s: %s; "
		    "fix the user and password in [redis] url", where,
		    r ? r->str : c->errstr);
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

/* Each replica that a valid CLUSTER SLOTS reply lists, once, with its
 * master. */
static void
check_replicas(const redisReply *r, const char *seed, FILE *out)
{
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
			fprintf(out, "ok: cluster replica %s of %s\n", where, of);
		}
	}
	keys_free(&seen);
}

/*
 * A cluster: every master and its slots, from the seed's CLUSTER SLOTS;
 * then the channel's master, where the daemon publishes (and appends to
 * the stream, which shares the slot).
 */
static int
check_cluster(const struct config *cfg, redisContext *seed, FILE *out)
{
	struct redis_slot_map m = { 0 };
	redisReply *r = redisCommand(seed, "CLUSTER SLOTS");
	redisContext *c = NULL;
	unsigned slot = redis_keyslot(cfg->redis_channel,
	    strlen(cfg->redis_channel));
	const struct redis_node *owner;
	char err[256], where[300];
	int problems = 0;

	if (r == NULL || r->type == REDIS_REPLY_ERROR ||
	    redis_slots_parse(&m, r, cfg->redis.host, err, sizeof(err)) == -1) {
		problems = check_problem(out, "redis: CLUSTER SLOTS on %s: %s; "
		    "is it a cluster? (cluster = off for a single Redis)",
		    cfg->redis.where, r == NULL ? seed->errstr :
		    r->type == REDIS_REPLY_ERROR ? r->str : err);
		goto done;
	}
	for (size_t i = 0; i < m.nmasters; i++) {
		struct buf ranges = { 0 };
		char range[32];
		int from = -1;

		for (int s2 = 0; s2 <= REDIS_SLOTS; s2++) {
			bool mine = s2 < REDIS_SLOTS && m.owner[s2] == i;

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
		redis_hostport_format(m.masters[i].host, m.masters[i].port,
		    where, sizeof(where));
		fprintf(out, "ok: cluster master %s, slots %s, %zu replica%s\n",
		    where, ranges.data, m.masters[i].nreplicas,
		    m.masters[i].nreplicas == 1 ? "" : "s");
		buf_free(&ranges);
	}
	check_replicas(r, cfg->redis.host, out);
	owner = &m.masters[m.owner[slot]];
	redis_hostport_format(owner->host, owner->port, where, sizeof(where));
	if ((c = check_login(cfg, owner->host, owner->port, where, out,
	    &problems)) == NULL)
		goto done;
	freeReplyObject(r);
	r = redisCommand(c, "%s %s %s", cfg->redis.cluster == REDIS_CLUSTER_ON ?
	    "SPUBLISH" : "PUBLISH", cfg->redis_channel, "");
	if (r == NULL || r->type == REDIS_REPLY_ERROR)
		problems += check_problem(out, "redis: cannot %s on %s: %s; "
		    "fix the user's ACL", cfg->redis.cluster == REDIS_CLUSTER_ON ?
		    "SPUBLISH" : "PUBLISH", where, r ? r->str : c->errstr);
	else
		fprintf(out, "ok: channel \"%s\" (slot %u) is served by %s\n",
		    cfg->redis_channel, slot, where);
	if (problems == 0)
		problems += check_stream(cfg, c, where, out);
done:
	freeReplyObject(r);
	redisFree(c);
	redis_slots_free(&m);
	return problems;
}

int
check_redis(const struct config *cfg, FILE *out)
{
	redisContext *c;
	redisReply *r = NULL;
	int problems = 0, port = cfg->redis.port;
	char host[256], where[300];

	snprintf(host, sizeof(host), "%s", cfg->redis.host ?
	    cfg->redis.host : "");
	snprintf(where, sizeof(where), "%s", cfg->redis.where);
	if (cfg->redis.nsentinels > 0) {
		if (check_sentinels(&cfg->redis, out, host, sizeof(host), &port))
			return 1;
		redis_hostport_format(host, port, where, sizeof(where));
	}
	if ((c = check_login(cfg, host, port, where, out, &problems)) == NULL)
		return problems;
	if (cfg->redis.cluster != REDIS_CLUSTER_OFF) {
		problems = check_cluster(cfg, c, out);
		goto done;
	}
	if ((problems = check_role(c, where, out)) > 0)
		goto done;
	r = redisCommand(c, "SELECT %d", cfg->redis.db);
	if (r == NULL || r->type == REDIS_REPLY_ERROR) {
		problems += check_problem(out, "redis: SELECT %d failed on %s: %s",
		    cfg->redis.db, where, r ? r->str : c->errstr);
		goto done;
	}
	freeReplyObject(r);
	r = redisCommand(c, "PUBLISH %s %s", "pginval-check", "ping");
	if (r == NULL || r->type == REDIS_REPLY_ERROR) {
		problems += check_problem(out, "redis: cannot PUBLISH on %s: %s; "
		    "fix the user's ACL", where, r ? r->str : c->errstr);
		goto done;
	}
	if ((problems = check_stream(cfg, c, where, out)) > 0)
		goto done;
	fprintf(out, "ok: connected to redis %s, database %d\n",
	    where, cfg->redis.db);
done:
	freeReplyObject(r);
	redisFree(c);
	return problems;
}

