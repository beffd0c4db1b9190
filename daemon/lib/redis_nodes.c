/*
 * The cluster nodes a client knows of (redis_nodes.h). Everything here
 * reads what a server sent, so every field is checked for type and
 * range before it is kept.
 */
#include "lib/redis_nodes.h"
#include "lib/redis_slots.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
redis_nodes_add(struct redis_nodes *ns, const char *host, int port,
    bool evict)
{
	int i;

	/* Shown and logged as it is: a server may not send a host with
	 * bytes a terminal would act on. */
	if (!redis_host_ok(host, strlen(host)))
		return -1;
	for (i = 0; i < ns->n; i++)
		if (ns->v[i].port == port && strcmp(ns->v[i].host, host) == 0)
			return i;
	if (ns->n < REDIS_NODES_MAX) {
		i = ns->n++;
	} else if (evict) {
		i = 1 + ns->evict++ % (REDIS_NODES_MAX - 1);
		free(ns->v[i].host);
	} else {
		return -1;
	}
	ns->v[i].host = xstrdup(host);
	ns->v[i].port = port;
	return i;
}

/* An address a server gave: empty or "?" means the one it was asked at. */
static void
redis_nodes_host(char *host, const char *s, size_t len, const char *cur_host)
{
	if (len == 0 || (len == 1 && s[0] == '?'))
		snprintf(host, REDIS_NODES_HOST_MAX, "%s", cur_host);
	else
		snprintf(host, REDIS_NODES_HOST_MAX, "%.*s", (int)len, s);
}

void
redis_nodes_learn(struct redis_nodes *ns, const redisReply *r,
    const char *cur_host)
{
	char host[REDIS_NODES_HOST_MAX];

	if (r->type != REDIS_REPLY_ARRAY)
		return;
	/* [[start, end, [ip, port, id, ...], replica...], ...] */
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *range = r->element[i];

		if (range->type != REDIS_REPLY_ARRAY)
			continue;
		for (size_t j = 2; j < range->elements; j++) {
			const redisReply *n = range->element[j];

			if (n->type != REDIS_REPLY_ARRAY || n->elements < 2 ||
			    n->element[0]->type != REDIS_REPLY_STRING ||
			    n->element[0]->len >= REDIS_NODES_HOST_MAX ||
			    memchr(n->element[0]->str, '\0',
			    n->element[0]->len) != NULL ||
			    n->element[1]->type != REDIS_REPLY_INTEGER ||
			    n->element[1]->integer < 1 ||
			    n->element[1]->integer > 65535)
				continue;
			redis_nodes_host(host, n->element[0]->str,
			    n->element[0]->len, cur_host);
			(void)redis_nodes_add(ns, host,
			    (int)n->element[1]->integer, false);
		}
	}
}

void
redis_nodes_free(struct redis_nodes *ns)
{
	for (int i = 0; i < ns->n; i++)
		free(ns->v[i].host);
	memset(ns, 0, sizeof(*ns));
}
