/*
 * The reply cap (redis_cap.h). Each object is counted with the size of
 * a redisReply, plus its string or its array of element pointers,
 * before hiredis's own function allocates it.
 */
#include "lib/redis_cap.h"

#include <hiredis/hiredis.h>

/* Counts size bytes; false past the cap. */
static bool
redis_cap_take(const redisReadTask *task, size_t size)
{
	struct redis_cap *cap = task->privdata;

	cap->used += size + sizeof(redisReply);
	if (cap->used <= cap->max)
		return true;
	cap->over = true;
	return false;
}

static void *
redis_cap_string(const redisReadTask *task, char *str, size_t len)
{
	struct redis_cap *cap = task->privdata;

	return redis_cap_take(task, len + 1) ?
	    cap->dflt->createString(task, str, len) : NULL;
}

static void *
redis_cap_array(const redisReadTask *task, int elements)
{
	struct redis_cap *cap = task->privdata;

	if (elements < 0 || !redis_cap_take(task, (size_t)elements *
	    sizeof(redisReply *)))
		return NULL;
	return cap->dflt->createArray(task, elements);
}

static void *
redis_cap_integer(const redisReadTask *task, long long value)
{
	struct redis_cap *cap = task->privdata;

	return redis_cap_take(task, 0) ?
	    cap->dflt->createInteger(task, value) : NULL;
}

static void *
redis_cap_nil(const redisReadTask *task)
{
	struct redis_cap *cap = task->privdata;

	return redis_cap_take(task, 0) ? cap->dflt->createNil(task) : NULL;
}

static redisReplyObjectFunctions redis_cap_functions = {
	redis_cap_string, redis_cap_array, redis_cap_integer, redis_cap_nil,
	freeReplyObject,
};

void
redis_cap_attach(struct redis_cap *cap, redisReader *r)
{
	cap->used = 0;
	cap->over = false;
	cap->dflt = r->fn;
	r->fn = &redis_cap_functions;
	r->privdata = cap;
}

void
redis_cap_next(struct redis_cap *cap)
{
	cap->used = 0;
}

size_t
redis_cap_pending(const redisReader *r)
{
	return r->len - r->pos;
}
