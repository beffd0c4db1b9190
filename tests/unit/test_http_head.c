/*
 * Unit tests for daemon/lib/http_head.c: complete and incomplete heads, the
 * two line endings, methods, targets and the size limit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../daemon/lib/http_head.h"

#include "tcheck.h"

struct head_case {
	const char *name;
	const char *in;
	size_t len;		/* 0: strlen(in) */
	enum http_head_result want;
	const char *path;	/* for HTTP_HEAD_OK */
	bool head;
};

static const struct head_case cases[] = {
	{ "probe", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 0,
	    HTTP_HEAD_OK, "/healthz", false },
	{ "bare newlines", "GET /metrics HTTP/1.0\n\n", 0, HTTP_HEAD_OK,
	    "/metrics", false },
	{ "HEAD", "HEAD /healthz HTTP/1.0\r\n\r\n", 0, HTTP_HEAD_OK,
	    "/healthz", true },
	{ "HTTP/0.9 line", "GET /healthz\r\n\r\n", 0, HTTP_HEAD_OK,
	    "/healthz", false },
	{ "query and fragment cut", "GET /metrics?a=1#f HTTP/1.1\r\n\r\n", 0,
	    HTTP_HEAD_OK, "/metrics", false },
	{ "fragment cut", "GET /m#?x HTTP/1.1\r\n\r\n", 0, HTTP_HEAD_OK, "/m",
	    false },
	{ "headers ignored", "GET / HTTP/1.1\r\nA: b\r\nC: \x01\r\n\r\nbody",
	    0, HTTP_HEAD_OK, "/", false },
	{ "empty", "", 0, HTTP_HEAD_INCOMPLETE, NULL, false },
	{ "no blank line", "GET /healthz HTTP/1.1\r\nHost: x\r\n", 0,
	    HTTP_HEAD_INCOMPLETE, NULL, false },
	{ "half a CRLF", "GET / HTTP/1.1\r\n\r", 0, HTTP_HEAD_INCOMPLETE,
	    NULL, false },
	{ "POST", "POST /metrics HTTP/1.1\r\n\r\n", 0, HTTP_HEAD_METHOD,
	    NULL, false },
	{ "lowercase get", "get / HTTP/1.1\r\n\r\n", 0, HTTP_HEAD_METHOD,
	    NULL, false },
	{ "long method", "GETGETGETGET / HTTP/1.1\r\n\r\n", 0,
	    HTTP_HEAD_METHOD, NULL, false },
	{ "method with a slash", "GE/T / HTTP/1.1\r\n\r\n", 0, HTTP_HEAD_BAD,
	    NULL, false },
	{ "blank line only", "\n\n", 0, HTTP_HEAD_BAD, NULL, false },
	{ "no target", "GET\r\n\r\n", 0, HTTP_HEAD_BAD, NULL, false },
	{ "empty target", "GET  HTTP/1.1\r\n\r\n", 0, HTTP_HEAD_BAD, NULL,
	    false },
	{ "absolute form", "GET http://x/healthz HTTP/1.1\r\n\r\n", 0,
	    HTTP_HEAD_BAD, NULL, false },
	{ "control byte", "GET /a\x7f HTTP/1.1\r\n\r\n", 0, HTTP_HEAD_BAD,
	    NULL, false },
	{ "NUL in target", "GET /a\0b HTTP/1.1\r\n\r\n", 22, HTTP_HEAD_BAD,
	    NULL, false },
	{ "not HTTP after target", "GET /a FTP/1\r\n\r\n", 0, HTTP_HEAD_BAD,
	    NULL, false },
	{ "two spaces", "GET  /a HTTP/1.1\r\n\r\n", 0, HTTP_HEAD_BAD, NULL,
	    false },
};

static void
test_cases(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct head_case *c = &cases[i];
		size_t len = c->len ? c->len : strlen(c->in);
		char *exact = malloc(len ? len : 1);
		struct http_request req = { 0 };
		enum http_head_result r;

		tcase = c->name;
		memcpy(exact, c->in, len);
		r = http_head_parse(exact, len, &req);
		CHECK(r == c->want);
		if (r == HTTP_HEAD_OK && c->want == HTTP_HEAD_OK) {
			CHECK(strcmp(req.path, c->path) == 0);
			CHECK(req.head == c->head);
		}
		free(exact);
	}
	t_done();
}

/* A head may not grow past HTTP_HEAD_MAX, and a target is bounded too. */
static void
test_limits(void **state)
{
	size_t n = HTTP_HEAD_MAX + 100;
	char *big = malloc(n);
	struct http_request req;

	memset(big, 'a', n);
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	tcase = "no end within the limit";
	CHECK(http_head_parse(big, HTTP_HEAD_MAX - 1, &req) ==
	    HTTP_HEAD_INCOMPLETE);
	CHECK(http_head_parse(big, HTTP_HEAD_MAX, &req) == HTTP_HEAD_TOO_LARGE);
	tcase = "end beyond the limit";
	memcpy(big + n - 4, "\r\n\r\n", 4);
	CHECK(http_head_parse(big, n, &req) == HTTP_HEAD_TOO_LARGE);
	tcase = "longest target";
	memcpy(big, "GET /", 5);
	memset(big + 5, 'p', HTTP_PATH_MAX - 2);
	memcpy(big + 5 + HTTP_PATH_MAX - 2, " HTTP/1.1\n\n", 11);
	CHECK(http_head_parse(big, HTTP_PATH_MAX + 14, &req) == HTTP_HEAD_OK);
	CHECK(strlen(req.path) == HTTP_PATH_MAX - 1);
	tcase = "target one byte too long";
	memcpy(big, "GET //", 6);
	memset(big + 6, 'p', HTTP_PATH_MAX - 2);
	memcpy(big + 6 + HTTP_PATH_MAX - 2, " HTTP/1.1\n\n", 11);
	CHECK(http_head_parse(big, HTTP_PATH_MAX + 15, &req) == HTTP_HEAD_BAD);
	free(big);
	t_done();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_limits),
	};

	return cmocka_run_group_tests_name("http_head", tests, NULL, NULL);
}
