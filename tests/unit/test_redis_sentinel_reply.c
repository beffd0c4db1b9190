/*
 * Unit tests for daemon/lib/redis_sentinel_reply.c: the answers of
 * SENTINEL get-master-addr-by-name and +switch-master payloads as Redis
 * 7.0.15's sentinels send them (the real ones first), and what a broken
 * or hostile sentinel could send instead.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../daemon/lib/redis_sentinel_reply.h"

#include "tcheck.h"
#include "resp_notation.h"

static void
test_addr(void **state)
{
	static const struct {
		const char *name, *spec;
		int rc;
		const char *host;	/* or the reason's start */
		int port;
	} cases[] = {
		{ "real", "[\"127.0.0.1\", \"56398\"]", 0, "127.0.0.1", 56398 },
		{ "ipv6", "[\"::1\", \"6379\"]", 0, "::1", 6379 },
		{ "unknown name", "nil", -1, "does not know", 0 },
		{ "no auth", "!\"NOAUTH Authentication required.\"", -1,
		    "NOAUTH Authentication required.", 0 },
		{ "port as integer", "[\"127.0.0.1\", 56398]", -1, "an answer",
		    0 },
		{ "port 0", "[\"127.0.0.1\", \"0\"]", -1, "an answer", 0 },
		{ "port too big", "[\"127.0.0.1\", \"65536\"]", -1, "an answer",
		    0 },
		{ "port signed", "[\"127.0.0.1\", \"+80\"]", -1, "an answer", 0 },
		{ "port empty", "[\"127.0.0.1\", \"\"]", -1, "an answer", 0 },
		{ "host empty", "[\"\", \"6379\"]", -1, "an answer", 0 },
		{ "host with space", "[\"a b\", \"6379\"]", -1, "an answer", 0 },
		{ "three", "[\"h\", \"1\", \"2\"]", -1, "an answer", 0 },
		{ "status", "+\"OK\"", -1, "an answer", 0 },
		{ "empty", "[]", -1, "an answer", 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		redisReply *r = resp(cases[i].spec);
		char host[64] = "", why[128] = "";
		int port = -1;

		tcase = cases[i].name;
		CHECK_INT(redis_sentinel_parse_addr(r, host, sizeof(host), &port,
		    why, sizeof(why)), cases[i].rc);
		if (cases[i].rc == 0) {
			CHECK_STR(host, cases[i].host);
			CHECK_INT(port, cases[i].port);
		} else if (strncmp(why, cases[i].host,
		    strlen(cases[i].host)) != 0) {
			t_fail(__LINE__, "why \"%s\"", why);
		}
		freeReplyObject(r);
	}
	tcase = "host longer than the buffer";
	{
		redisReply *r = resp("[\"a-rather-long-host-name\", \"1\"]");
		char host[8], why[64];
		int port;

		CHECK_INT(redis_sentinel_parse_addr(r, host, sizeof(host), &port,
		    why, sizeof(why)), -1);
		freeReplyObject(r);
	}
	t_done();
}

static void
test_switch(void **state)
{
	static const struct {
		const char *name, *payload;
		int rc;
		const char *host;
		int port;
	} cases[] = {
		{ "real", "mymaster 127.0.0.1 56398 127.0.0.1 56399", 0,
		    "127.0.0.1", 56399 },
		{ "another master", "other 127.0.0.1 1 127.0.0.1 2", -1, "", 0 },
		{ "a prefix of ours", "mymaste 127.0.0.1 1 127.0.0.1 2", -1, "",
		    0 },
		{ "ours as a prefix", "mymaster2 127.0.0.1 1 127.0.0.1 2", -1,
		    "", 0 },
		{ "four words", "mymaster 127.0.0.1 1 127.0.0.1", -1, "", 0 },
		{ "six words", "mymaster 127.0.0.1 1 127.0.0.1 2 x", -1, "", 0 },
		{ "bad port", "mymaster 127.0.0.1 1 127.0.0.1 2x", -1, "", 0 },
		{ "port 0", "mymaster 127.0.0.1 1 127.0.0.1 0", -1, "", 0 },
		{ "double space", "mymaster  127.0.0.1 1 127.0.0.1 2", -1, "",
		    0 },
		{ "trailing space", "mymaster 127.0.0.1 1 127.0.0.1 2 ", -1, "",
		    0 },
		{ "empty", "", -1, "", 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char host[64] = "";
		int port = -1;

		tcase = cases[i].name;
		CHECK_INT(redis_sentinel_parse_switch(cases[i].payload,
		    strlen(cases[i].payload), "mymaster", host, sizeof(host),
		    &port), cases[i].rc);
		if (cases[i].rc == 0) {
			CHECK_STR(host, cases[i].host);
			CHECK_INT(port, cases[i].port);
		}
	}
	tcase = "not NUL-terminated";
	{
		const char p[] = "mymaster 127.0.0.1 1 127.0.0.1 6380XXXX";
		char host[64];
		int port;

		CHECK_INT(redis_sentinel_parse_switch(p, strlen(p) - 4,
		    "mymaster", host, sizeof(host), &port), 0);
		CHECK_INT(port, 6380);
	}
	t_done();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addr),
		cmocka_unit_test(test_switch),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
