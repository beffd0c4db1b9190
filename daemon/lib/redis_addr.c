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

static void
addr_free_url(struct redis_addr *a)
{
	free(a->host);
	free(a->unix_path);
	free(a->user);
	free(a->password);
	free(a->where);
	a->host = a->unix_path = a->user = a->password = a->where = NULL;
	a->port = a->db = 0;
}

static void
addr_free_topology(struct redis_addr *a)
{
	for (size_t i = 0; i < a->nsentinels; i++)
		free(a->sentinels[i].host);
	free(a->sentinels);
	free(a->master);
	free(a->sentinel_password);
	a->sentinels = NULL;
	a->nsentinels = 0;
	a->master = a->sentinel_password = NULL;
	a->cluster = REDIS_CLUSTER_OFF;
}

void
redis_hostport_format(const char *host, int port, char *out, size_t outlen)
{
	snprintf(out, outlen, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host,
	    port);
}

int
redis_addr_parse(struct redis_addr *a, const char *url, bool *url_password,
    char *err, size_t errlen)
{
	const char *p, *at, *slash, *colon, *hostend;
	char *end;
	long v;

	addr_free_url(a);
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

		redis_hostport_format(a->host, a->port, where, sizeof(where));
		a->where = xstrdup(where);
	}
	return 0;
}

/* One "host:port" or "[v6]:port" of a sentinels list, s[0..n). */
static int
addr_hostport(struct redis_hostport *hp, const char *s, size_t n,
    char *err, size_t errlen)
{
	const char *host = s, *hostend, *port = NULL;
	char num[8], *end;
	long v = 26379;
	size_t plen = 0;

	if (n > 0 && s[0] == '[') {
		host = s + 1;
		hostend = memchr(s, ']', n);
		if (hostend == NULL)
			goto bad;
		if (hostend + 1 < s + n) {
			if (hostend[1] != ':')
				goto bad;
			port = hostend + 2;
		}
	} else {
		hostend = memchr(s, ':', n);
		if (hostend != NULL) {
			port = hostend + 1;
			if (memchr(port, ':', (size_t)(s + n - port)) != NULL)
				goto bad;	/* a bare IPv6 address */
		} else {
			hostend = s + n;
		}
	}
	if (hostend == host || hostend - host > 255)
		goto bad;
	if (port != NULL) {
		plen = (size_t)(s + n - port);
		if (plen == 0 || plen >= sizeof(num))
			goto bad;
		memcpy(num, port, plen);
		num[plen] = '\0';
		errno = 0;
		v = strtol(num, &end, 10);
		if (errno != 0 || *end != '\0' || v < 1 || v > 65535)
			goto bad;
	}
	hp->host = xstrndup(host, (size_t)(hostend - host));
	hp->port = (int)v;
	return 0;
bad:
	snprintf(err, errlen, "sentinels: \"%.*s\" is not host:port (as in "
	    "10.0.0.1:26379, or [::1]:26379)", (int)(n > 80 ? 80 : n), s);
	return -1;
}

int
redis_addr_topology(struct redis_addr *a, const char *cluster,
    const char *sentinels, const char *master, const char *sentinel_password,
    char *err, size_t errlen)
{
	addr_free_topology(a);
	if (cluster == NULL || strcmp(cluster, "off") == 0)
		a->cluster = REDIS_CLUSTER_OFF;
	else if (strcmp(cluster, "on") == 0)
		a->cluster = REDIS_CLUSTER_ON;
	else if (strcmp(cluster, "broadcast") == 0)
		a->cluster = REDIS_CLUSTER_BROADCAST;
	else {
		snprintf(err, errlen, "cluster: \"%.40s\" is not on, broadcast "
		    "or off", cluster);
		return -1;
	}
	if (a->cluster != REDIS_CLUSTER_OFF) {
		if (sentinels != NULL) {
			snprintf(err, errlen, "cluster and sentinels exclude "
			    "each other: a Redis Cluster fails over by itself");
			return -1;
		}
		if (a->unix_path != NULL) {
			snprintf(err, errlen, "cluster: url must name a seed "
			    "node by host and port, not a unix socket");
			return -1;
		}
		if (a->db != 0) {
			snprintf(err, errlen, "cluster: a Redis Cluster has "
			    "only database 0; remove /%d from url", a->db);
			return -1;
		}
	}
	if (sentinels == NULL) {
		if (master != NULL || sentinel_password != NULL) {
			snprintf(err, errlen, "%s is set but sentinels is not: "
			    "list the sentinels as sentinels = host:port, "
			    "host:port", master != NULL ? "master" :
			    "sentinel_password");
			return -1;
		}
		return 0;
	}
	if (master == NULL || master[0] == '\0') {
		snprintf(err, errlen, "sentinels needs master, the name the "
		    "sentinels monitor the master by (as in master = mymaster)");
		return -1;
	}
	for (const char *p = sentinels; ; ) {
		size_t n;

		p += strspn(p, " \t");
		n = strcspn(p, ",");
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n == 0) {
			snprintf(err, errlen, "sentinels: an empty entry; list "
			    "them as host:port, host:port");
			addr_free_topology(a);
			return -1;
		}
		a->sentinels = xrealloc(a->sentinels, (a->nsentinels + 1) *
		    sizeof(*a->sentinels));
		if (addr_hostport(&a->sentinels[a->nsentinels], p, n, err,
		    errlen) == -1) {
			addr_free_topology(a);
			return -1;
		}
		a->nsentinels++;
		p += strcspn(p, ",");
		if (*p++ == '\0')
			break;
	}
	a->master = xstrdup(master);
	if (sentinel_password != NULL && sentinel_password[0] != '\0')
		a->sentinel_password = xstrdup(sentinel_password);
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
	dst->cluster = src->cluster;
	dst->nsentinels = src->nsentinels;
	dst->sentinels = NULL;
	if (src->nsentinels > 0)
		dst->sentinels = xmalloc(src->nsentinels *
		    sizeof(*dst->sentinels));
	for (size_t i = 0; i < src->nsentinels; i++) {
		dst->sentinels[i].host = xstrdup(src->sentinels[i].host);
		dst->sentinels[i].port = src->sentinels[i].port;
	}
	dst->master = addr_dup(src->master);
	dst->sentinel_password = addr_dup(src->sentinel_password);
}

static bool
addr_same_sentinels(const struct redis_addr *a, const struct redis_addr *b)
{
	for (size_t i = 0; i < a->nsentinels && i < b->nsentinels; i++)
		if (strcmp(a->sentinels[i].host, b->sentinels[i].host) != 0 ||
		    a->sentinels[i].port != b->sentinels[i].port)
			return false;
	return true;
}

bool
redis_addr_same(const struct redis_addr *a, const struct redis_addr *b)
{
	return !str_differs(a->host, b->host) &&
	    !str_differs(a->unix_path, b->unix_path) && a->port == b->port &&
	    !str_differs(a->user, b->user) &&
	    !str_differs(a->password, b->password) && a->db == b->db &&
	    a->cluster == b->cluster && a->nsentinels == b->nsentinels &&
	    !str_differs(a->master, b->master) &&
	    !str_differs(a->sentinel_password, b->sentinel_password) &&
	    addr_same_sentinels(a, b);
}

void
redis_addr_free(struct redis_addr *a)
{
	addr_free_url(a);
	addr_free_topology(a);
}
