/*
 * Fuzzing of http_head_parse(), the metrics port's request parser.
 *
 * The input is parsed as it arrives from a peer: whole, then (when short)
 * grown one byte at a time, as a trickling client would send it.
 * Each prefix is parsed from an exact-size copy, so any read past len is
 * caught. The verdicts must agree with the input: once complete, a head
 * stays complete with the same result; a path is NUL-terminated, short
 * enough, starts with '/' and holds no query string, space or control
 * byte; and nothing is complete without an empty line.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../daemon/lib/http_head.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fail(const char *what, const uint8_t *data, size_t len)
{
	fprintf(stderr, "fuzz_http: %s (after %zu bytes)\n", what, len);
	(void)data;
	abort();
}

static int
has_blank_line(const uint8_t *d, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++)
		if (d[i] == '\n' && (d[i + 1] == '\n' ||
		    (i + 2 < n && d[i + 1] == '\r' && d[i + 2] == '\n')))
			return 1;
	return 0;
}

static enum http_head_result
parse(const uint8_t *data, size_t len, struct http_request *req)
{
	char *exact = malloc(len ? len : 1);
	enum http_head_result r;

	if (exact == NULL)
		abort();
	memcpy(exact, data, len);
	memset(req, 'x', sizeof(*req));
	r = http_head_parse(exact, len, req);
	free(exact);
	if (r == HTTP_HEAD_OK) {
		size_t plen = strnlen(req->path, sizeof(req->path));

		if (plen == sizeof(req->path))
			fail("path not NUL-terminated", data, len);
		if (req->path[0] != '/')
			fail("path does not start with /", data, len);
		for (size_t i = 0; i < plen; i++)
			if ((unsigned char)req->path[i] <= ' ' ||
			    (unsigned char)req->path[i] >= 0x7f ||
			    req->path[i] == '?' || req->path[i] == '#')
				fail("bad byte in path", data, len);
	}
	if (r != HTTP_HEAD_INCOMPLETE && r != HTTP_HEAD_TOO_LARGE &&
	    !has_blank_line(data, len))
		fail("complete without an empty line", data, len);
	if (r == HTTP_HEAD_INCOMPLETE && len >= HTTP_HEAD_MAX)
		fail("incomplete beyond HTTP_HEAD_MAX", data, len);
	return r;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_request whole, req;
	enum http_head_result rw = parse(data, size, &whole), r, first = 0;
	int done = 0;

	/* Byte by byte, the first complete verdict is the one that counts,
	 * and later bytes do not change it (for short inputs: this is
	 * quadratic). */
	if (size > 2048)
		return 0;
	for (size_t n = 1; n <= size; n++) {
		r = parse(data, n, &req);
		if (r == HTTP_HEAD_INCOMPLETE) {
			if (done)
				fail("complete head became incomplete", data, n);
			continue;
		}
		if (!done) {
			done = 1;
			first = r;
		} else if (r != first) {
			fail("verdict changed as bytes came", data, n);
		}
	}
	if (done && rw != first)
		fail("whole input parsed differently", data, size);
	return 0;
}
