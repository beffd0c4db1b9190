/*
 * Fuzzing of what pginval reads from Redis Sentinel:
 * redis_sentinel_parse_addr() on every reply hiredis's reader makes of the
 * input (RESP bytes, as a sentinel would send them), and
 * redis_sentinel_parse_switch() on the raw bytes, from an exact-size copy
 * so that any read past len is caught. Properties checked: an address
 * found has a printable host without spaces that fits its buffer, and a
 * port within 1..65535; a reason is always NUL-terminated.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "../../daemon/lib/redis_cap.h"
#include "../../daemon/lib/redis_sentinel_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_redis_sentinel: %s\n", what);
	abort();
}

static void
check_addr(const char *host, size_t hostlen, int port)
{
	size_t n = strnlen(host, hostlen);

	if (n == 0 || n >= hostlen)
		fail("host empty or unterminated");
	for (size_t i = 0; i < n; i++)
		if (host[i] <= ' ' || host[i] > '~')
			fail("host not printable");
	if (port < 1 || port > 65535)
		fail("port out of range");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size ? size : 1);
	char host[16], why[64];
	int port;
	struct redis_cap cap = { .max = 1 << 20 };	/* as the daemon's */
	redisReader *rd;
	void *reply;

	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	if (redis_sentinel_parse_switch(copy, size, "mymaster", host,
	    sizeof(host), &port) == 0)
		check_addr(host, sizeof(host), port);
	rd = redisReaderCreate();
	redis_cap_attach(&cap, rd);
	if (redisReaderFeed(rd, copy, size) == REDIS_OK)
		for (int i = 0; i < 64 && redisReaderGetReply(rd, &reply) ==
		    REDIS_OK && reply != NULL; i++) {
			why[0] = '\0';
			if (redis_sentinel_parse_addr(reply, host, sizeof(host),
			    &port, why, sizeof(why)) == 0)
				check_addr(host, sizeof(host), port);
			else if (strnlen(why, sizeof(why)) >= sizeof(why))
				fail("reason unterminated");
			freeReplyObject(reply);
			redis_cap_next(&cap);
		}
	redisReaderFree(rd);
	free(copy);
	return 0;
}
