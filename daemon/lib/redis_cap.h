/*
 * A cap on what one reply costs in hiredis's reader: the reader's object
 * functions are wrapped so that building a reply past max bytes of
 * objects fails (the reader then stops with an out-of-memory error,
 * which the caller tells apart with over). Without it a server can make
 * the reader build an array of any size, one small element at a time.
 * hiredis 0.14 has no such limit. Knows nothing of pginval.
 */
#ifndef PGINVAL_REDIS_CAP_H
#define PGINVAL_REDIS_CAP_H

#include <stdbool.h>
#include <stddef.h>

struct redisReader;
struct redisReplyObjectFunctions;

struct redis_cap {
	size_t max;		/* bytes of objects in one reply */
	size_t used;		/* in the reply being read */
	bool over;		/* the reader stopped on max */
	struct redisReplyObjectFunctions *dflt;	/* the reader's own */
};

/* Wraps r's object functions with cap, which must outlive r (r's
 * privdata is taken). Replies are still freed with freeReplyObject(). */
void redis_cap_attach(struct redis_cap *cap, struct redisReader *r);
/* A reply came out of the reader: the next one starts from nothing. */
void redis_cap_next(struct redis_cap *cap);
/* The input not parsed yet, which a bulk string fills whole before the
 * reader makes an object of it; the caller compares it with max. */
size_t redis_cap_pending(const struct redisReader *r);

#endif
