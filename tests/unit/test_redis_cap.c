/*
 * Unit tests for daemon/lib/redis_cap.c: hiredis's reader, capped,
 * accepts replies under the cap one after the other, and stops on one
 * that would cost more (a huge array header, many small elements, a long
 * string), saying so; redis_cap_pending() counts the input a bulk string
 * holds back.
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

#include "../../daemon/lib/redis_cap.h"

#include "tcheck.h"

static const char message[] =
    "*3\r\n$8\r\nsmessage\r\n$7\r\npginval\r\n$5\r\nhello\r\n";

struct cap_case {
	const char *name;
	size_t max;
	const char *resp;	/* NULL: built by the test */
	int rc;
	bool over;
};

static void
test_cap(void **state)
{
	static const struct cap_case cases[] = {
		{ "a message under the cap", 1024, message, REDIS_OK, false },
		{ "a message over a tiny cap", 64, message, REDIS_ERR, true },
		{ "a huge array header", 1 << 20, "*2000000000\r\n", REDIS_ERR,
		    true },
		{ "many small elements", 1000, NULL, REDIS_ERR, true },
		{ "a long string", 100, "$200\r\n", REDIS_ERR, true },
		{ "not RESP: a protocol error", 1024, "?x\r\n", REDIS_ERR,
		    false },
	};
	char buf[4096];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct cap_case *c = &cases[i];
		struct redis_cap cap = { .max = c->max };
		redisReader *r = redisReaderCreate();
		const char *resp = c->resp;
		void *reply = NULL;

		tcase = c->name;
		if (resp == NULL) {
			size_t n = (size_t)snprintf(buf, sizeof(buf), "*200\r\n");

			for (int j = 0; j < 200; j++)
				n += (size_t)snprintf(buf + n, sizeof(buf) - n,
				    ":1\r\n");
			resp = buf;
		} else if (strncmp(resp, "$200", 4) == 0) {
			snprintf(buf, sizeof(buf), "$200\r\n%0200d\r\n", 0);
			resp = buf;
		}
		redis_cap_attach(&cap, r);
		CHECK_INT(redisReaderFeed(r, resp, strlen(resp)), REDIS_OK);
		CHECK_INT(redisReaderGetReply(r, &reply), c->rc);
		CHECK(cap.over == c->over);
		CHECK((reply != NULL) == (c->rc == REDIS_OK));
		freeReplyObject(reply);
		redisReaderFree(r);
	}
	t_done();
}

static void
test_next_starts_from_nothing(void **state)
{
	struct redis_cap cap = { .max = 300 };
	redisReader *r = redisReaderCreate();
	void *reply;

	tcase = "replies one after the other";
	redis_cap_attach(&cap, r);
	for (int i = 0; i < 20; i++) {
		reply = NULL;
		CHECK_INT(redisReaderFeed(r, message, strlen(message)), REDIS_OK);
		CHECK_INT(redisReaderGetReply(r, &reply), REDIS_OK);
		CHECK(reply != NULL && !cap.over);
		freeReplyObject(reply);
		redis_cap_next(&cap);
	}
	tcase = "a bulk string held back";
	CHECK_INT(redisReaderFeed(r, "$100\r\nabc", 9), REDIS_OK);
	reply = NULL;
	CHECK_INT(redisReaderGetReply(r, &reply), REDIS_OK);
	CHECK(reply == NULL);
	/* The reader has taken the type byte already. */
	CHECK(redis_cap_pending(r) >= 8 && redis_cap_pending(r) <= 9);
	redisReaderFree(r);
	t_done();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cap),
		cmocka_unit_test(test_next_starts_from_nothing),
	};

	return cmocka_run_group_tests_name("redis_cap", tests, NULL, NULL);
}
