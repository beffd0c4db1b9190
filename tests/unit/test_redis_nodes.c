/*
 * Unit tests for daemon/lib/redis_nodes.c: MOVED redirects (real ones
 * from Redis 7.0, IPv6, empty and "?" hosts, malformed ones), the bounded
 * node list, and the addresses taken from CLUSTER SLOTS replies decoded
 * by hiredis's reader from real RESP bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "../../daemon/lib/redis_nodes.h"

#include "tcheck.h"

struct moved_case {
	const char *name, *err;
	int rc;
	const char *host;
	int port;
};

static const struct moved_case moved_cases[] = {
	{ "real", "MOVED 9865 127.0.0.1:34619", 0, "127.0.0.1", 34619 },
	{ "slot 0", "MOVED 0 10.0.0.1:6379", 0, "10.0.0.1", 6379 },
	{ "ipv6: the last colon", "MOVED 1 ::1:7000", 0, "::1", 7000 },
	{ "a name", "MOVED 16383 redis-2.local:1", 0, "redis-2.local", 1 },
	{ "empty host: the current one", "MOVED 9865 :7001", 0, "cur", 7001 },
	{ "? host: the current one", "MOVED 9865 ?:7001", 0, "cur", 7001 },
	{ "port 65535", "MOVED 5 h:65535", 0, "h", 65535 },
	{ "port 0", "MOVED 5 h:0", -1, NULL, 0 },
	{ "port too big", "MOVED 5 h:65536", -1, NULL, 0 },
	{ "port too long", "MOVED 5 h:0000001", -1, NULL, 0 },
	{ "port not a number", "MOVED 5 h:0x50", -1, NULL, 0 },
	{ "no port", "MOVED 5 h:", -1, NULL, 0 },
	{ "no colon", "MOVED 5 h", -1, NULL, 0 },
	{ "no slot", "MOVED  h:1", -1, NULL, 0 },
	{ "slot not a number", "MOVED x h:1", -1, NULL, 0 },
	{ "slot too long", "MOVED 123456 h:1", -1, NULL, 0 },
	{ "trailing word", "MOVED 5 h:1 x", -1, NULL, 0 },
	{ "ASK is not MOVED", "ASK 9865 127.0.0.1:34617", -1, NULL, 0 },
	{ "another error", "ERR unknown command", -1, NULL, 0 },
	{ "empty", "", -1, NULL, 0 },
};

static void
test_moved(void **state)
{
	char host[REDIS_NODES_HOST_MAX], long_host[400];
	int port;

	for (size_t i = 0; i < sizeof(moved_cases) / sizeof(moved_cases[0]);
	    i++) {
		const struct moved_case *c = &moved_cases[i];

		tcase = c->name;
		port = -1;
		CHECK_INT(redis_moved_parse(c->err, strlen(c->err), "cur", host,
		    &port), c->rc);
		if (c->rc == 0) {
			CHECK_STR(host, c->host);
			CHECK_INT(port, c->port);
		}
	}
	tcase = "a host too long for the buffer";
	memcpy(long_host, "MOVED 1 ", 8);
	memset(long_host + 8, 'h', 300);
	memcpy(long_host + 308, ":1", 3);
	CHECK_INT(redis_moved_parse(long_host, strlen(long_host), "cur", host,
	    &port), -1);
	tcase = "a NUL inside";
	CHECK_INT(redis_moved_parse("MOVED 1 h\0x:1", 13, "cur", host, &port),
	    -1);
	t_done();
}

static void
test_add_is_bounded(void **state)
{
	struct redis_nodes ns = { 0 };
	char host[32];

	tcase = "bounded";
	CHECK_INT(redis_nodes_add(&ns, "seed", 1, false), 0);
	CHECK_INT(redis_nodes_add(&ns, "seed", 1, true), 0);
	CHECK_INT(redis_nodes_add(&ns, "seed", 2, false), 1);
	for (int i = 0; i < 100; i++) {
		snprintf(host, sizeof(host), "n%d", i);
		(void)redis_nodes_add(&ns, host, 7000, i % 2 == 0);
		CHECK(ns.n <= REDIS_NODES_MAX);
	}
	CHECK_INT(ns.n, REDIS_NODES_MAX);
	CHECK_STR(ns.v[0].host, "seed");	/* never evicted */
	CHECK_INT(redis_nodes_add(&ns, "new", 1, false), -1);
	CHECK(redis_nodes_add(&ns, "new", 1, true) > 0);
	CHECK_STR(ns.v[0].host, "seed");
	redis_nodes_free(&ns);
	CHECK_INT(ns.n, 0);
	t_done();
}

static redisReply *
decode(const char *resp)
{
	redisReader *r = redisReaderCreate();
	void *reply = NULL;

	assert_non_null(r);
	assert_int_equal(redisReaderFeed(r, resp, strlen(resp)), REDIS_OK);
	assert_int_equal(redisReaderGetReply(r, &reply), REDIS_OK);
	assert_non_null(reply);
	redisReaderFree(r);
	return reply;
}

static void
test_learn(void **state)
{
	/* Shaped like Redis 7.0.15's reply after slot 9865 moved (ip, port,
	 * id, empty metadata per node), with an empty and a "?" ip, and
	 * two nodes of the wrong shape. */
	static const char *slots =
	    "*3\r\n"
	    "*4\r\n:0\r\n:5460\r\n"
	    "*4\r\n$9\r\n127.0.0.1\r\n:34617\r\n$2\r\nid\r\n*0\r\n"
	    "*4\r\n$9\r\n127.0.0.1\r\n:34621\r\n$2\r\nid\r\n*0\r\n"
	    "*3\r\n:9865\r\n:9865\r\n"
	    "*4\r\n$0\r\n\r\n:34619\r\n$2\r\nid\r\n*0\r\n"
	    "*5\r\n:10923\r\n:16383\r\n"
	    "*4\r\n$1\r\n?\r\n:34618\r\n$2\r\nid\r\n*0\r\n"
	    "*2\r\n:1\r\n$1\r\nx\r\n"		/* port is not a string */
	    "*2\r\n$1\r\nh\r\n:70000\r\n";	/* port out of range */
	struct redis_nodes ns = { 0 };
	redisReply *r = decode(slots);

	tcase = "CLUSTER SLOTS";
	(void)redis_nodes_add(&ns, "seed", 1, false);
	redis_nodes_learn(&ns, r, "here");
	CHECK_INT(ns.n, 5);
	CHECK_STR(ns.v[1].host, "127.0.0.1");
	CHECK_INT(ns.v[1].port, 34617);
	CHECK_INT(ns.v[2].port, 34621);
	CHECK_STR(ns.v[3].host, "here");	/* empty ip */
	CHECK_INT(ns.v[3].port, 34619);
	CHECK_STR(ns.v[4].host, "here");	/* "?" */
	CHECK_INT(ns.v[4].port, 34618);
	freeReplyObject(r);

	tcase = "not an array";
	r = decode("-ERR This instance has cluster support disabled\r\n");
	redis_nodes_learn(&ns, r, "here");
	CHECK_INT(ns.n, 5);
	freeReplyObject(r);
	redis_nodes_free(&ns);
	t_done();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_moved),
		cmocka_unit_test(test_add_is_bounded),
		cmocka_unit_test(test_learn),
	};

	return cmocka_run_group_tests_name("redis_nodes", tests, NULL, NULL);
}
