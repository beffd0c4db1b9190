/*
 * Where a Redis is and how to log in: parsed from a redis:// or unix:
 * URL, copied, compared and freed. Pure; knows nothing of pginval.
 */
#include "lib/redis_addr.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
addr_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Copies s[0..n) with %XX sequences decoded. */
static char *
addr_unescape(const char *s, size_t n)
{
	char *out = xmalloc(n + 1), *o = out;

	for (size_t i = 0; i < n; i++) {
		int hi, lo;

		if (s[i] == '%' && i + 2 < n &&
		    (hi = addr_hexval(s[i + 1])) >= 0 &&
		    (lo = addr_hexval(s[i + 2])) >= 0) {
			*o++ = (char)(hi * 16 + lo);
			i += 2;
		} else {
			*o++ = s[i];
		}
	}
	*o = '\0';
	return out;
}

int
redis_addr_parse(struct redis_addr *a, const char *url, bool *url_password,
    char *err, size_t errlen)
{
	const char *p, *at, *slash, *colon, *hostend;
	char *end;
	long v;

	redis_addr_free(a);
	a->port = 6379;
	if (url_password != NULL)
		*url_password = false;

	if (strncmp(url, "unix:", 5) == 0) {
		p = url + 5;
		if (strncmp(p, "//", 2) == 0)
			p += 2;
		if (*p != '/') {
			snprintf(err, errlen, "url: a unix socket needs an absolute "
			    "path, as in unix:/run/redis/redis.sock");
			return -1;
		}
		a->unix_path = xstrdup(p);
		a->where = xstrdup(p);
		return 0;
	}
	if (strncmp(url, "redis://", 8) != 0) {
		snprintf(err, errlen, "url: expected redis://[user:password@]host"
		    "[:port][/db] or unix:/path (rediss:// needs a TLS proxy, see "
		    "the README)");
		return -1;
	}
	p = url + 8;
	slash = strchr(p, '/');
	if (slash == NULL)
		slash = p + strlen(p);
	/* A '/' in the password would cut the URL there and put the rest
	 * of the password in the host, port or database number. */
	if (strchr(slash, '@') != NULL) {
		snprintf(err, errlen, "url: an '@' after the first '/': "
		    "percent-encode a '/' in the user name or password as %%2F");
		return -1;
	}
	/* The last '@' before the path ends the credentials. */
	at = NULL;
	for (const char *q = p; q < slash; q++)
		if (*q == '@')
			at = q;
	if (at != NULL) {
		colon = memchr(p, ':', (size_t)(at - p));
		if (colon != NULL) {
			if (colon > p)
				a->user = addr_unescape(p, (size_t)(colon - p));
			a->password = addr_unescape(colon + 1,
			    (size_t)(at - colon - 1));
		} else {
			a->password = addr_unescape(p, (size_t)(at - p));
		}
		p = at + 1;
		if (url_password != NULL)
			*url_password = a->password[0] != '\0';
	}
	if (*p == '[') {
		hostend = memchr(p, ']', (size_t)(slash - p));
		if (hostend == NULL) {
			snprintf(err, errlen, "url: unclosed '[' in the host");
			return -1;
		}
		/* Only a port may follow: "[::1]6380" is a typo, not port 6379. */
		if (hostend + 1 < slash && hostend[1] != ':') {
			snprintf(err, errlen, "url: unexpected text after ']' in "
			    "the host");
			return -1;
		}
		a->host = xstrndup(p + 1, (size_t)(hostend - p - 1));
		colon = hostend + 1 < slash ? hostend + 1 : NULL;
	} else {
		colon = memchr(p, ':', (size_t)(slash - p));
		hostend = colon ? colon : slash;
		a->host = xstrndup(p, (size_t)(hostend - p));
	}
	if (a->host[0] == '\0') {
		snprintf(err, errlen, "url: no host name");
		return -1;
	}
	if (colon != NULL) {
		errno = 0;
		v = strtol(colon + 1, &end, 10);
		if (errno != 0 || end != slash || v < 1 || v > 65535) {
			snprintf(err, errlen, "url: bad port");
			return -1;
		}
		a->port = (int)v;
	}
	if (*slash == '/' && slash[1] != '\0') {
		errno = 0;
		v = strtol(slash + 1, &end, 10);
		if (errno != 0 || *end != '\0' || v < 0 || v > INT_MAX) {
			snprintf(err, errlen, "url: the database number after "
			    "the '/' is not a whole number from 0");
			return -1;
		}
		a->db = (int)v;
	}
	{
		char where[300];
		snprintf(where, sizeof(where), strchr(a->host, ':') ?
		    "[%s]:%d" : "%s:%d", a->host, a->port);
		a->where = xstrdup(where);
	}
	return 0;
}

static char *
addr_dup(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

void
redis_addr_copy(struct redis_addr *dst, const struct redis_addr *src)
{
	dst->host = addr_dup(src->host);
	dst->port = src->port;
	dst->unix_path = addr_dup(src->unix_path);
	dst->db = src->db;
	dst->user = addr_dup(src->user);
	dst->password = addr_dup(src->password);
	dst->where = addr_dup(src->where);
}

bool
redis_addr_same(const struct redis_addr *a, const struct redis_addr *b)
{
	return !str_differs(a->host, b->host) &&
	    !str_differs(a->unix_path, b->unix_path) && a->port == b->port &&
	    !str_differs(a->user, b->user) &&
	    !str_differs(a->password, b->password) && a->db == b->db;
}

void
redis_addr_free(struct redis_addr *a)
{
	free(a->host);
	free(a->unix_path);
	free(a->user);
	free(a->password);
	free(a->where);
	memset(a, 0, sizeof(*a));
}
