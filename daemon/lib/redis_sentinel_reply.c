/*
 * Sentinel's replies, read defensively: a sentinel is a server like any
 * other, and what it says decides where pginval connects.
 */
#include "lib/redis_sentinel_reply.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>

/* A port, the whole of s[0..n): 1..65535; else 0. */
static int
sentinel_port(const char *s, size_t n)
{
	long p = 0;

	if (n == 0 || n > 5)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		p = p * 10 + (s[i] - '0');
	}
	return p >= 1 && p <= 65535 ? (int)p : 0;
}

/* A host: printable, no space, shorter than hostlen. */
static int
sentinel_host(const char *s, size_t n, char *host, size_t hostlen)
{
	if (n == 0 || n >= hostlen)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] > '~')
			return -1;
	memcpy(host, s, n);
	host[n] = '\0';
	return 0;
}

int
redis_sentinel_parse_addr(const redisReply *r, char *host, size_t hostlen,
    int *port, char *why, size_t whylen)
{
	const redisReply *h, *p;

	if (r->type == REDIS_REPLY_NIL) {
		snprintf(why, whylen, "does not know that master name");
		return -1;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(why, whylen, "%.*s", (int)r->len, r->str);
		return -1;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_STRING) {
		snprintf(why, whylen, "an answer that is not [host, port]");
		return -1;
	}
	h = r->element[0];
	p = r->element[1];
	if ((*port = sentinel_port(p->str, p->len)) == 0 ||
	    sentinel_host(h->str, h->len, host, hostlen) == -1) {
		snprintf(why, whylen, "an answer with a host or port that is "
		    "not one");
		return -1;
	}
	return 0;
}

/* The next word of p[*at..len), split at single spaces. */
static const char *
sentinel_word(const char *p, size_t len, size_t *at, size_t *n)
{
	const char *w = p + *at;

	if (*at >= len)
		return NULL;
	for (*n = 0; *at + *n < len && p[*at + *n] != ' '; (*n)++)
		;
	*at += *n + 1;
	return w;
}

int
redis_sentinel_parse_switch(const char *p, size_t len, const char *master,
    char *host, size_t hostlen, int *port)
{
	const char *w[5];
	size_t n[5], at = 0;

	for (int i = 0; i < 5; i++)
		if ((w[i] = sentinel_word(p, len, &at, &n[i])) == NULL)
			return -1;
	if (at != len + 1 || n[0] != strlen(master) ||
	    memcmp(w[0], master, n[0]) != 0)
		return -1;
	if ((*port = sentinel_port(w[4], n[4])) == 0)
		return -1;
	return sentinel_host(w[3], n[3], host, hostlen);
}
