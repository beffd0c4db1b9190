/*
 * Parsing of the request line: "METHOD SP target [SP HTTP/x.y]", then
 * header lines that nobody reads, then an empty line. The target must be
 * an absolute path of printable ASCII; its query string is cut off, since
 * /metrics and /healthz take no parameters.
 */
#include "lib/http_head.h"

#include <string.h>

/* The offset just past the empty line that ends the head, or 0. */
static size_t
http_head_end(const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (data[i] != '\n')
			continue;
		if (i + 1 < len && data[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && data[i + 1] == '\r' && data[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* A method is a token of RFC 9110: letters, digits and a few marks. */
static bool
http_is_token(const char *s, size_t n)
{
	static const char marks[] = "!#$%&'*+-.^_`|~";

	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || (c != '\0' &&
		    memchr(marks, c, sizeof(marks) - 1) != NULL)))
			return false;
	}
	return true;
}

enum http_head_result
http_head_parse(const char *data, size_t len, struct http_request *req)
{
	size_t end = http_head_end(data, len), line, m, t, plen;
	const char *target;

	if (end == 0)
		return len >= HTTP_HEAD_MAX ? HTTP_HEAD_TOO_LARGE :
		    HTTP_HEAD_INCOMPLETE;
	if (end > HTTP_HEAD_MAX)
		return HTTP_HEAD_TOO_LARGE;
	line = (size_t)((const char *)memchr(data, '\n', end) - data);
	if (line > 0 && data[line - 1] == '\r')
		line--;
	for (m = 0; m < line && data[m] != ' '; m++)
		;
	if (!http_is_token(data, m) || m == line)
		return HTTP_HEAD_BAD;
	target = data + m + 1;
	for (t = 0; m + 1 + t < line && target[t] != ' '; t++)
		if ((unsigned char)target[t] <= ' ' ||
		    (unsigned char)target[t] >= 0x7f)
			return HTTP_HEAD_BAD;
	if (t == 0 || target[0] != '/' || t >= HTTP_PATH_MAX)
		return HTTP_HEAD_BAD;
	/* After the target, nothing or " HTTP/..." (HTTP/0.9 sent none). */
	if (m + 1 + t < line && (line - (m + 2 + t) < 5 ||
	    memcmp(target + t + 1, "HTTP/", 5) != 0))
		return HTTP_HEAD_BAD;
	if (!((m == 3 && memcmp(data, "GET", 3) == 0) ||
	    (m == 4 && memcmp(data, "HEAD", 4) == 0)))
		return HTTP_HEAD_METHOD;
	req->head = m == 4;
	for (plen = 0; plen < t && target[plen] != '?' && target[plen] != '#';
	    plen++)
		;
	memcpy(req->path, target, plen);
	req->path[plen] = '\0';
	return HTTP_HEAD_OK;
}
