/*
 * Replies for unit tests, written in a short notation and turned into
 * RESP2 bytes, then into a redisReply by hiredis's own reader, as a
 * daemon would get them:
 *
 *	[0, 16383, ["127.0.0.1", 7000, "6d7a...", []]]
 *
 * Arrays [...], integers, "bulk strings" (no escapes), nil, +"status"
 * and !"error". Free the reply with freeReplyObject().
 */
#ifndef PGINVAL_RESP_NOTATION_H
#define PGINVAL_RESP_NOTATION_H

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "../../daemon/lib/buf.h"

static int resp_value(const char **p, struct buf *b);

static void
resp_skip(const char **p)
{
	while (**p == ' ' || **p == ',' || **p == '\n' || **p == '\t')
		(*p)++;
}

static int
resp_text(const char **p, struct buf *b, char kind)
{
	const char *end;

	if (**p != '"' || (end = strchr(*p + 1, '"')) == NULL)
		return -1;
	if (kind == '$') {
		buf_addc(b, '$');
		buf_add_u64(b, (uint64_t)(end - *p - 1));
		buf_adds(b, "\r\n");
	} else {
		buf_addc(b, kind);
	}
	buf_add(b, *p + 1, (size_t)(end - *p - 1));
	buf_adds(b, "\r\n");
	*p = end + 1;
	return 0;
}

static int
resp_value(const char **p, struct buf *b)
{
	resp_skip(p);
	if (**p == '[') {
		struct buf inner = { 0 };
		uint64_t n = 0;

		(*p)++;
		for (resp_skip(p); **p != ']'; resp_skip(p), n++)
			if (**p == '\0' || resp_value(p, &inner) < 0) {
				buf_free(&inner);
				return -1;
			}
		(*p)++;
		buf_addc(b, '*');
		buf_add_u64(b, n);
		buf_adds(b, "\r\n");
		buf_add(b, inner.data, inner.len);
		buf_free(&inner);
		return 0;
	}
	if (**p == '"')
		return resp_text(p, b, '$');
	if (**p == '+' || **p == '!') {
		char kind = **p == '+' ? '+' : '-';

		(*p)++;
		return resp_text(p, b, kind);
	}
	if (strncmp(*p, "nil", 3) == 0) {
		*p += 3;
		buf_adds(b, "$-1\r\n");
		return 0;
	}
	if (**p == '-' || isdigit((unsigned char)**p)) {
		char *end;
		long long v = strtoll(*p, &end, 10);

		*p = end;
		buf_addc(b, ':');
		buf_add_i64(b, v);
		buf_adds(b, "\r\n");
		return 0;
	}
	return -1;
}

/* The reply hiredis's reader makes of len bytes of RESP, or NULL. */
static redisReply *
resp_read(const char *bytes, size_t len)
{
	redisReader *rd = redisReaderCreate();
	void *reply = NULL;

	if (redisReaderFeed(rd, bytes, len) != REDIS_OK ||
	    redisReaderGetReply(rd, &reply) != REDIS_OK)
		reply = NULL;
	redisReaderFree(rd);
	return reply;
}

/* The reply written in the notation; aborts on a typo in the test. */
static redisReply *
resp(const char *notation)
{
	struct buf b = { 0 };
	const char *p = notation;
	redisReply *r;

	if (resp_value(&p, &b) < 0) {
		fprintf(stderr, "resp: bad notation at \"%.20s\"\n", p);
		abort();
	}
	r = resp_read(b.data, b.len);
	buf_free(&b);
	if (r == NULL) {
		fprintf(stderr, "resp: hiredis read nothing\n");
		abort();
	}
	return r;
}

#endif
