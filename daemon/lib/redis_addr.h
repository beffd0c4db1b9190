/*
 * Where a Redis is and how to log in, as one value: parsed from a URL
 * (redis://[user:password@]host[:port][/db] or unix:/path), copied,
 * compared and freed. Pure; knows nothing of pginval.
 */
#ifndef PGINVAL_REDIS_ADDR_H
#define PGINVAL_REDIS_ADDR_H

#include <stdbool.h>
#include <stddef.h>

struct redis_addr {
	char *host;		/* NULL for a unix socket */
	int port;
	char *unix_path;
	int db;			/* SELECTed when not 0 */
	char *user, *password;	/* may be NULL; never logged */
	char *where;		/* "host:port" or socket path, for logs */
};

/*
 * Parses url into *a, replacing what it held (a zeroed struct, or one
 * from before). *url_password (may be NULL) tells whether the URL itself
 * holds a password. -1 with err on error: err never holds a part of the
 * URL, which may hold a password.
 */
int redis_addr_parse(struct redis_addr *a, const char *url,
    bool *url_password, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* A deep copy into dst, whose previous strings are not freed. */
void redis_addr_copy(struct redis_addr *dst, const struct redis_addr *src);
/* Whether both reach the same server with the same credentials and
 * database (where, a name for logs, is not compared). */
bool redis_addr_same(const struct redis_addr *a, const struct redis_addr *b);
/* Frees the strings and zeroes *a. */
void redis_addr_free(struct redis_addr *a);

#endif
