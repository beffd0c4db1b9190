/*
 * Where a Redis is and how to log in, as one value: parsed from a URL
 * (redis://[user:password@]host[:port][/db] or unix:/path), with how the
 * servers behind it are arranged (one server, a Redis Cluster whose seed
 * node the URL names, or a master that Sentinel knows), copied, compared
 * and freed. Pure; knows nothing of pginval.
 */
#ifndef PGINVAL_REDIS_ADDR_H
#define PGINVAL_REDIS_ADDR_H

#include <stdbool.h>
#include <stddef.h>

enum redis_cluster {
	REDIS_CLUSTER_OFF,
	REDIS_CLUSTER_ON,	/* sharded pub/sub: SPUBLISH, SSUBSCRIBE */
	REDIS_CLUSTER_BROADCAST,	/* PUBLISH, SUBSCRIBE: every node */
};

struct redis_hostport {
	char *host;
	int port;
};

struct redis_addr {
	char *host;		/* NULL for a unix socket */
	int port;
	char *unix_path;
	int db;			/* SELECTed when not 0 */
	char *user, *password;	/* may be NULL; never logged */
	char *where;		/* "host:port" or socket path, for logs */
	/* Not from the URL: redis_addr_topology(). */
	enum redis_cluster cluster;	/* not OFF: the URL names a seed */
	struct redis_hostport *sentinels;	/* nsentinels: Sentinel */
	size_t nsentinels;
	char *master;		/* the master's name in Sentinel */
	char *sentinel_password;	/* AUTH to the sentinels; never logged */
};

/*
 * Parses url into *a, replacing what it held of a URL (a zeroed struct,
 * or one from before; the arrangement stays). *url_password (may be NULL) tells whether the URL itself
 * holds a password. -1 with err on error: err never holds a part of the
 * URL, which may hold a password.
 */
int redis_addr_parse(struct redis_addr *a, const char *url,
    bool *url_password, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/*
 * Sets how the servers are arranged, from the settings cluster ("off",
 * "on" or "broadcast"; NULL: off), sentinels ("host:port, host:port";
 * the port defaults to 26379), master and sentinel_password (each NULL
 * when not given). -1 with err when one is malformed or they do not go
 * together; err never holds the password.
 */
int redis_addr_topology(struct redis_addr *a, const char *cluster,
    const char *sentinels, const char *master, const char *sentinel_password,
    char *err, size_t errlen) __attribute__((warn_unused_result));
/* "host:port" (IPv6 in brackets) into out, for logs. */
void redis_hostport_format(const char *host, int port, char *out,
    size_t outlen);
/* A deep copy into dst, whose previous strings are not freed. */
void redis_addr_copy(struct redis_addr *dst, const struct redis_addr *src);
/* Whether both reach the same servers, arranged the same way, with the
 * same credentials and database (where, a name for logs, is not
 * compared). */
bool redis_addr_same(const struct redis_addr *a, const struct redis_addr *b);
/* Frees the strings and zeroes *a. */
void redis_addr_free(struct redis_addr *a);

#endif
