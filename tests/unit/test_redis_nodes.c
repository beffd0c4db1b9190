/*
 * Unit tests for daemon/lib/redis_nodes.c: the bounded node list, hosts
 * it refuses, and the addresses taken from CLUSTER SLOTS replies decoded
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

	tcase = "hosts a terminal would act on";
	CHECK_INT(redis_nodes_add(&ns, "a b", 1, true), -1);
	CHECK_INT(redis_nodes_add(&ns, "\x1b[2J", 1, true), -1);
	r = decode("*1\r\n*3\r\n:0\r\n:16383\r\n"
	    "*3\r\n$4\r\n\x1b[2J\r\n:7000\r\n$2\r\nid\r\n");
	redis_nodes_learn(&ns, r, "here");
	CHECK_INT(ns.n, 5);
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
		cmocka_unit_test(test_add_is_bounded),
		cmocka_unit_test(test_learn),
	};

	return cmocka_run_group_tests_name("redis_nodes", tests, NULL, NULL);
}
