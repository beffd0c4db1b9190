/*
 * The nodes of a Redis Cluster that a client has met, as a short list to
 * fall back on when one is down: the seed from the URL, the targets of
 * -MOVED redirects and the addresses CLUSTER SLOTS lists. Bounded, so
 * that a server cannot make it grow. Pure; knows nothing of pginval.
 */
#ifndef PGINVAL_REDIS_NODES_H
#define PGINVAL_REDIS_NODES_H

#include <stdbool.h>
#include <stddef.h>

#define REDIS_NODES_MAX 16
#define REDIS_NODES_HOST_MAX 256	/* with the NUL */

struct redisReply;

struct redis_nodes {
	struct {
		char *host;
		int port;
	} v[REDIS_NODES_MAX];	/* [0]: the first added, never evicted */
	int n;
	int evict;		/* the next one replaced when full */
};

/*
 * Adds host:port unless known. When the list is full, evict replaces a
 * node other than the first, else the node is not kept. Returns its
 * index, or -1 when not kept, or when host is not redis_host_ok().
 */
int redis_nodes_add(struct redis_nodes *ns, const char *host, int port,
    bool evict);
/* Adds the addresses of every node in a CLUSTER SLOTS reply (entries of
 * the wrong shape are skipped), without evicting; an empty or "?" ip is
 * cur_host, the node that answered. */
void redis_nodes_learn(struct redis_nodes *ns, const struct redisReply *slots,
    const char *cur_host);
void redis_nodes_free(struct redis_nodes *ns);

#endif
