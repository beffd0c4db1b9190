/*
 * Fuzzing of what a Redis node's replies can do to the subscriber link
 * (redis_psub.c) besides hiredis's own reader: the MOVED parser, and the
 * node list fed from a CLUSTER SLOTS reply decoded by the capped reader.
 *
 * The input is both the text of an error reply and RESP bytes. Properties
 * checked: a parsed MOVED has a port in 1..65535 and a host that fits its
 * buffer; the node list never passes REDIS_NODES_MAX and every node kept
 * has a port in range; the reader never builds a reply over the cap.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "../../daemon/lib/redis_cap.h"
#include "../../daemon/lib/redis_nodes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_redis_nodes: %s\n", what);
	abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct redis_nodes ns = { 0 };
	struct redis_cap cap = { .max = 4096 };
	redisReader *r;
	void *reply = NULL;

	if ((r = redisReaderCreate()) == NULL)
		return 0;
	redis_cap_attach(&cap, r);
	(void)redis_nodes_add(&ns, "seed", 1, false);
	if (redisReaderFeed(r, (const char *)data, size) == REDIS_OK) {
		while (redisReaderGetReply(r, &reply) == REDIS_OK &&
		    reply != NULL) {
			if (cap.used > cap.max)
				fail("a reply over the cap");
			redis_nodes_learn(&ns, reply, "cur");
			freeReplyObject(reply);
			reply = NULL;
			redis_cap_next(&cap);
		}
	}
	redisReaderFree(r);
	if (ns.n > REDIS_NODES_MAX || strcmp(ns.v[0].host, "seed") != 0)
		fail("the node list overflowed");
	for (int i = 0; i < ns.n; i++)
		if (ns.v[i].port < 1 || ns.v[i].port > 65535)
			fail("a node with a port out of range");
	redis_nodes_free(&ns);
	return 0;
}
