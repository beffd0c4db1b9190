/*
 * The request head of the metrics responder, parsed without I/O: what the
 * peer sent so far in, a verdict out. The head is outside input, so this
 * is kept apart from the sockets, unit-tested and fuzzed.
 */
#ifndef PGINVAL_HTTP_HEAD_H
#define PGINVAL_HTTP_HEAD_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_HEAD_MAX 8192	/* bytes up to and with the blank line */
#define HTTP_PATH_MAX 1024	/* bytes of the request target, with NUL */

enum http_head_result {
	HTTP_HEAD_INCOMPLETE,	/* no blank line yet: read more */
	HTTP_HEAD_OK,		/* a GET or HEAD of req->path */
	HTTP_HEAD_BAD,		/* not an HTTP request line: 400 */
	HTTP_HEAD_METHOD,	/* a method other than GET and HEAD: 405 */
	HTTP_HEAD_TOO_LARGE,	/* no blank line within HTTP_HEAD_MAX: drop */
};

struct http_request {
	bool head;			/* HEAD: the response has no body */
	char path[HTTP_PATH_MAX];	/* without query string or fragment */
};

/*
 * Looks at the len bytes received so far (any bytes, NUL included). The
 * head ends at the first empty line ("\r\n\r\n" or "\n\n"); only its
 * request line is read, and req is filled only for HTTP_HEAD_OK.
 */
enum http_head_result http_head_parse(const char *data, size_t len,
    struct http_request *req);

#endif
