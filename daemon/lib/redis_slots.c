/*
 * Redis Cluster without I/O. The slot of a key, as the servers compute it
 * (CLUSTER KEYSLOT); the slot map read from CLUSTER SLOTS, which is
 * positional, exists on every cluster version and lists only live nodes;
 * and the reading of cluster errors, so that the I/O modules route, follow
 * redirects and group keys the same way. Pure; knows nothing of pginval.
 */
#include "lib/redis_slots.h"
#include "lib/xalloc.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CRC16-CCITT, XMODEM flavour: polynomial 0x1021, initial value 0, no
 * reflection, no final xor. One entry per value of the top byte. */
static const uint16_t slots_crc_table[256] = {
	0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50a5, 0x60c6, 0x70e7,
	0x8108, 0x9129, 0xa14a, 0xb16b, 0xc18c, 0xd1ad, 0xe1ce, 0xf1ef,
	0x1231, 0x0210, 0x3273, 0x2252, 0x52b5, 0x4294, 0x72f7, 0x62d6,
	0x9339, 0x8318, 0xb37b, 0xa35a, 0xd3bd, 0xc39c, 0xf3ff, 0xe3de,
	0x2462, 0x3443, 0x0420, 0x1401, 0x64e6, 0x74c7, 0x44a4, 0x5485,
	0xa56a, 0xb54b, 0x8528, 0x9509, 0xe5ee, 0xf5cf, 0xc5ac, 0xd58d,
	0x3653, 0x2672, 0x1611, 0x0630, 0x76d7, 0x66f6, 0x5695, 0x46b4,
	0xb75b, 0xa77a, 0x9719, 0x8738, 0xf7df, 0xe7fe, 0xd79d, 0xc7bc,
	0x48c4, 0x58e5, 0x6886, 0x78a7, 0x0840, 0x1861, 0x2802, 0x3823,
	0xc9cc, 0xd9ed, 0xe98e, 0xf9af, 0x8948, 0x9969, 0xa90a, 0xb92b,
	0x5af5, 0x4ad4, 0x7ab7, 0x6a96, 0x1a71, 0x0a50, 0x3a33, 0x2a12,
	0xdbfd, 0xcbdc, 0xfbbf, 0xeb9e, 0x9b79, 0x8b58, 0xbb3b, 0xab1a,
	0x6ca6, 0x7c87, 0x4ce4, 0x5cc5, 0x2c22, 0x3c03, 0x0c60, 0x1c41,
	0xedae, 0xfd8f, 0xcdec, 0xddcd, 0xad2a, 0xbd0b, 0x8d68, 0x9d49,
	0x7e97, 0x6eb6, 0x5ed5, 0x4ef4, 0x3e13, 0x2e32, 0x1e51, 0x0e70,
	0xff9f, 0xefbe, 0xdfdd, 0xcffc, 0xbf1b, 0xaf3a, 0x9f59, 0x8f78,
	0x9188, 0x81a9, 0xb1ca, 0xa1eb, 0xd10c, 0xc12d, 0xf14e, 0xe16f,
	0x1080, 0x00a1, 0x30c2, 0x20e3, 0x5004, 0x4025, 0x7046, 0x6067,
	0x83b9, 0x9398, 0xa3fb, 0xb3da, 0xc33d, 0xd31c, 0xe37f, 0xf35e,
	0x02b1, 0x1290, 0x22f3, 0x32d2, 0x4235, 0x5214, 0x6277, 0x7256,
	0xb5ea, 0xa5cb, 0x95a8, 0x8589, 0xf56e, 0xe54f, 0xd52c, 0xc50d,
	0x34e2, 0x24c3, 0x14a0, 0x0481, 0x7466, 0x6447, 0x5424, 0x4405,
	0xa7db, 0xb7fa, 0x8799, 0x97b8, 0xe75f, 0xf77e, 0xc71d, 0xd73c,
	0x26d3, 0x36f2, 0x0691, 0x16b0, 0x6657, 0x7676, 0x4615, 0x5634,
	0xd94c, 0xc96d, 0xf90e, 0xe92f, 0x99c8, 0x89e9, 0xb98a, 0xa9ab,
	0x5844, 0x4865, 0x7806, 0x6827, 0x18c0, 0x08e1, 0x3882, 0x28a3,
	0xcb7d, 0xdb5c, 0xeb3f, 0xfb1e, 0x8bf9, 0x9bd8, 0xabbb, 0xbb9a,
	0x4a75, 0x5a54, 0x6a37, 0x7a16, 0x0af1, 0x1ad0, 0x2ab3, 0x3a92,
	0xfd2e, 0xed0f, 0xdd6c, 0xcd4d, 0xbdaa, 0xad8b, 0x9de8, 0x8dc9,
	0x7c26, 0x6c07, 0x5c64, 0x4c45, 0x3ca2, 0x2c83, 0x1ce0, 0x0cc1,
	0xef1f, 0xff3e, 0xcf5d, 0xdf7c, 0xaf9b, 0xbfba, 0x8fd9, 0x9ff8,
	0x6e17, 0x7e36, 0x4e55, 0x5e74, 0x2e93, 0x3eb2, 0x0ed1, 0x1ef0,
};

static uint16_t
slots_crc16(const unsigned char *p, size_t len)
{
	uint16_t crc = 0;

	for (size_t i = 0; i < len; i++)
		crc = (uint16_t)((crc << 8) ^
		    slots_crc_table[((crc >> 8) ^ p[i]) & 0xff]);
	return crc;
}

unsigned
redis_keyslot(const char *key, size_t len)
{
	const char *open, *close;

	open = memchr(key, '{', len);
	if (open != NULL) {
		size_t rest = len - (size_t)(open - key) - 1;

		close = memchr(open + 1, '}', rest);
		/* An empty tag "{}" hashes the whole key. */
		if (close != NULL && close > open + 1) {
			key = open + 1;
			len = (size_t)(close - open - 1);
		}
	}
	return slots_crc16((const unsigned char *)key, len) & (REDIS_SLOTS - 1);
}

bool
redis_host_ok(const char *s, size_t n)
{
	if (n > REDIS_HOST_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

/* Node ids are 40 hex digits; accept any short printable word. */
static bool
slots_id_ok(const redisReply *r)
{
	return r->type == REDIS_REPLY_STRING && r->len > 0 && r->len <= 64 &&
	    redis_host_ok(r->str, r->len);
}

static void
slots_node_free(struct redis_node *n)
{
	free(n->host);
	free(n->id);
	for (size_t i = 0; i < n->nreplicas; i++)
		free(n->replicas[i]);
	free(n->replicas);
	memset(n, 0, sizeof(*n));
}

void
redis_slots_free(struct redis_slot_map *m)
{
	for (size_t i = 0; i < m->nmasters; i++)
		slots_node_free(&m->masters[i]);
	free(m->masters);
	memset(m, 0, sizeof(*m));
}

/*
 * Checks the node at r (entry e, position pos: 2 is the master) and gives
 * its host (borrowed: from the reply or seed), port and id. 0, or -1 with
 * err.
 */
static int
slots_node(const redisReply *r, const char *seed, size_t e, size_t pos,
    const char **host, size_t *hlen, int *port, const redisReply **id,
    char *err, size_t errlen)
{
	const redisReply *h;
	const char *what = pos == 2 ? "master" : "replica";

	if (r->type != REDIS_REPLY_ARRAY || r->elements < 3) {
		snprintf(err, errlen, "CLUSTER SLOTS entry %zu: the %s is not "
		    "[host, port, id, ...]", e, what);
		return -1;
	}
	h = r->element[0];
	if (h->type != REDIS_REPLY_STRING && h->type != REDIS_REPLY_NIL) {
		snprintf(err, errlen, "CLUSTER SLOTS entry %zu: the %s's host "
		    "is not a string", e, what);
		return -1;
	}
	if (h->type == REDIS_REPLY_NIL || h->len == 0 ||
	    (h->len == 1 && h->str[0] == '?')) {
		/* The node does not know the address clients reach it at. */
		*host = seed != NULL ? seed : "";
		*hlen = strlen(*host);
	} else {
		*host = h->str, *hlen = h->len;
	}
	if (!redis_host_ok(*host, *hlen) || *hlen == 0) {
		snprintf(err, errlen, "CLUSTER SLOTS entry %zu: the %s's host is "
		    "empty, longer than %d bytes or not printable", e, what,
		    REDIS_HOST_MAX);
		return -1;
	}
	if (r->element[1]->type != REDIS_REPLY_INTEGER ||
	    r->element[1]->integer < 1 || r->element[1]->integer > 65535) {
		snprintf(err, errlen, "CLUSTER SLOTS entry %zu: the %s's port is "
		    "not a number from 1 to 65535", e, what);
		return -1;
	}
	*port = (int)r->element[1]->integer;
	if (!slots_id_ok(r->element[2])) {
		snprintf(err, errlen, "CLUSTER SLOTS entry %zu: the %s's node id "
		    "is missing or malformed", e, what);
		return -1;
	}
	*id = r->element[2];
	/* 7.0 adds a map of metadata (hostname...), an array in RESP2. */
	if (r->elements > 3 && r->element[3]->type != REDIS_REPLY_ARRAY) {
		snprintf(err, errlen, "CLUSTER SLOTS entry %zu: the %s's fourth "
		    "field is not a map of metadata", e, what);
		return -1;
	}
	return 0;
}

static bool
slots_same_id(const char *id, const redisReply *r)
{
	return strlen(id) == r->len && memcmp(id, r->str, r->len) == 0;
}

/* Adds the replica id to the master's list, once. */
static void
slots_add_replica(struct redis_node *n, const redisReply *id)
{
	for (size_t i = 0; i < n->nreplicas; i++)
		if (slots_same_id(n->replicas[i], id))
			return;
	n->replicas = xrealloc(n->replicas,
	    (n->nreplicas + 1) * sizeof(*n->replicas));
	n->replicas[n->nreplicas++] = xstrndup(id->str, id->len);
}

/*
 * The index in m of the master of entry e, added when new. One id has one
 * address, and one address one id. -1 with err.
 */
static int
slots_master(struct redis_slot_map *m, const redisReply *r, const char *seed,
    size_t e, char *err, size_t errlen)
{
	const redisReply *id;
	const char *host;
	size_t hlen, i;
	int port;
	struct redis_node *n;

	if (slots_node(r, seed, e, 2, &host, &hlen, &port, &id, err,
	    errlen) < 0)
		return -1;
	for (i = 0; i < m->nmasters; i++) {
		bool same_id = slots_same_id(m->masters[i].id, id);
		bool same_addr = m->masters[i].port == port &&
		    strlen(m->masters[i].host) == hlen &&
		    memcmp(m->masters[i].host, host, hlen) == 0;

		if (same_id && same_addr)
			return (int)i;
		if (same_id || same_addr) {
			snprintf(err, errlen, "CLUSTER SLOTS entry %zu: master "
			    "%s:%d is listed with two different addresses or "
			    "node ids (the topology is changing: retry)", e,
			    m->masters[i].host, m->masters[i].port);
			return -1;
		}
	}
	m->masters = xrealloc(m->masters, (m->nmasters + 1) * sizeof(*n));
	n = &m->masters[m->nmasters];
	memset(n, 0, sizeof(*n));
	n->host = xstrndup(host, hlen);
	n->port = port;
	n->id = xstrndup(id->str, id->len);
	return (int)m->nmasters++;
}

/* Reads entry e: [start, end, master, replica...] into m. */
static int
slots_entry(struct redis_slot_map *m, bool *taken, const redisReply *r,
    const char *seed, size_t e, char *err, size_t errlen)
{
	long long start, end;
	int idx;

	if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
	    r->element[0]->type != REDIS_REPLY_INTEGER ||
	    r->element[1]->type != REDIS_REPLY_INTEGER) {
		snprintf(err, errlen, "CLUSTER SLOTS entry %zu is not [start, "
		    "end, master, replica...]", e);
		return -1;
	}
	start = r->element[0]->integer;
	end = r->element[1]->integer;
	if (start < 0 || end >= REDIS_SLOTS || start > end) {
		snprintf(err, errlen, "CLUSTER SLOTS entry %zu: slots %lld-%lld "
		    "are not a range within 0-%d", e, start, end,
		    REDIS_SLOTS - 1);
		return -1;
	}
	if ((idx = slots_master(m, r->element[2], seed, e, err, errlen)) < 0)
		return -1;
	for (size_t i = 3; i < r->elements; i++) {
		const redisReply *id;
		const char *host;
		size_t hlen;
		int port;

		if (slots_node(r->element[i], seed, e, i, &host, &hlen, &port,
		    &id, err, errlen) < 0)
			return -1;
		slots_add_replica(&m->masters[idx], id);
	}
	for (long long s = start; s <= end; s++) {
		if (taken[s]) {
			snprintf(err, errlen, "CLUSTER SLOTS entry %zu: slot %lld "
			    "is given twice (the second time in %lld-%lld)", e,
			    s, start, end);
			return -1;
		}
		taken[s] = true;
		m->owner[s] = (uint16_t)idx;
	}
	return 0;
}

/* Names the first range of slots without an owner in err. */
static void
slots_gap(const bool *taken, char *err, size_t errlen)
{
	size_t first = 0, last, missing = 0;

	while (taken[first])
		first++;
	last = first;
	while (last + 1 < REDIS_SLOTS && !taken[last + 1])
		last++;
	for (size_t s = 0; s < REDIS_SLOTS; s++)
		missing += !taken[s];
	snprintf(err, errlen, "CLUSTER SLOTS: %zu slot(s) have no master, "
	    "the first %zu-%zu (a master failed or a reshard is unfinished: "
	    "retry later)", missing, first, last);
}

/* One node id names one node: a replica's id is no master's, and no
 * other master's replica (or a promotion would be taken for another
 * shard's). -1 with err. */
static int
slots_ids_unique(const struct redis_slot_map *m, char *err, size_t errlen)
{
	for (size_t i = 0; i < m->nmasters; i++)
		for (size_t j = 0; j < m->masters[i].nreplicas; j++) {
			const char *id = m->masters[i].replicas[j];

			for (size_t k = 0; k < m->nmasters; k++) {
				bool dup = strcmp(m->masters[k].id, id) == 0;

				for (size_t l = 0; k != i && !dup &&
				    l < m->masters[k].nreplicas; l++)
					dup = strcmp(m->masters[k].replicas[l],
					    id) == 0;
				if (dup) {
					snprintf(err, errlen, "CLUSTER SLOTS: a "
					    "replica of %s:%d has the node id of "
					    "another node (the topology is "
					    "changing: retry)", m->masters[i].host,
					    m->masters[i].port);
					return -1;
				}
			}
		}
	return 0;
}

int
redis_slots_parse(struct redis_slot_map *m, const struct redisReply *r,
    const char *seed_host, char *err, size_t errlen)
{
	struct redis_slot_map *tmp = xcalloc(1, sizeof(*tmp));
	bool *taken = xcalloc(REDIS_SLOTS, sizeof(*taken));
	size_t covered = 0;
	int rc = -1;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
		snprintf(err, errlen, "CLUSTER SLOTS: %s",
		    r != NULL && r->type == REDIS_REPLY_ERROR ? "refused (is "
		    "the node in cluster mode?)" : "the reply is not an array");
		goto done;
	}
	for (size_t e = 0; e < r->elements; e++)
		if (slots_entry(tmp, taken, r->element[e], seed_host, e, err,
		    errlen) < 0)
			goto done;
	for (size_t s = 0; s < REDIS_SLOTS; s++)
		covered += taken[s];
	if (covered != REDIS_SLOTS) {
		slots_gap(taken, err, errlen);
		goto done;
	}
	if (slots_ids_unique(tmp, err, errlen) < 0)
		goto done;
	redis_slots_free(m);
	*m = *tmp;
	memset(tmp, 0, sizeof(*tmp));
	rc = 0;
done:
	redis_slots_free(tmp);
	free(tmp);
	free(taken);
	return rc;
}

static const struct {
	const char *word;
	enum redis_err_kind kind;
} slots_errs[] = {
	{ "MOVED", REDIS_ERR_MOVED },
	{ "ASK", REDIS_ERR_ASK },
	{ "TRYAGAIN", REDIS_ERR_TRYAGAIN },
	{ "CLUSTERDOWN", REDIS_ERR_CLUSTERDOWN },
	{ "READONLY", REDIS_ERR_READONLY },
	{ "NOSCRIPT", REDIS_ERR_NOSCRIPT },
	{ "LOADING", REDIS_ERR_LOADING },
	{ "MASTERDOWN", REDIS_ERR_MASTERDOWN },
};

/* Reads the decimal number s[0..n) (1 to 5 digits) into *v. */
static bool
slots_number(const char *s, size_t n, long *v)
{
	if (n == 0 || n > 5)
		return false;
	*v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		*v = *v * 10 + (s[i] - '0');
	}
	return true;
}

/* Reads "<slot> <host>:<port>" (s[0..n)) into *r. */
static bool
slots_redirect(const char *s, size_t n, struct redis_redirect *r)
{
	const char *sp = memchr(s, ' ', n), *ep, *colon = NULL;
	size_t elen, hlen;
	long slot, port;

	if (sp == NULL || !slots_number(s, (size_t)(sp - s), &slot) ||
	    slot >= REDIS_SLOTS)
		return false;
	ep = sp + 1;
	elen = n - (size_t)(ep - s);
	for (size_t i = 0; i < elen; i++)
		if (ep[i] == ':')
			colon = ep + i;
	if (colon == NULL)
		return false;
	hlen = (size_t)(colon - ep);
	if (!slots_number(colon + 1, elen - hlen - 1, &port) || port < 1 ||
	    port > 65535 || !redis_host_ok(ep, hlen))
		return false;
	/* "[::1]" is an IPv6 address too. */
	if (hlen >= 2 && ep[0] == '[' && ep[hlen - 1] == ']')
		ep++, hlen -= 2;
	/* "?": the node does not know its address; use the one it has. */
	if (hlen == 1 && ep[0] == '?')
		hlen = 0;
	r->slot = (unsigned)slot;
	memcpy(r->host, ep, hlen);
	r->host[hlen] = '\0';
	r->port = (int)port;
	return true;
}

enum redis_err_kind
redis_err_classify(const char *err, size_t len, struct redis_redirect *r)
{
	const char *sp = memchr(err, ' ', len);
	size_t wlen = sp != NULL ? (size_t)(sp - err) : len;
	struct redis_redirect tmp;

	for (size_t i = 0; i < sizeof(slots_errs) / sizeof(slots_errs[0]); i++) {
		enum redis_err_kind k = slots_errs[i].kind;

		if (strlen(slots_errs[i].word) != wlen ||
		    memcmp(slots_errs[i].word, err, wlen) != 0)
			continue;
		if (k != REDIS_ERR_MOVED && k != REDIS_ERR_ASK)
			return k;
		if (sp == NULL || !slots_redirect(sp + 1,
		    len - wlen - 1, &tmp))
			return REDIS_ERR_OTHER;
		if (r != NULL)
			*r = tmp;
		return k;
	}
	return REDIS_ERR_OTHER;
}

static int
slots_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

void
redis_slots_group(const char *const *keys, const size_t *lens, size_t n,
    uint16_t *slot, size_t *order)
{
	uint64_t *packed;

	if (n == 0)
		return;
	/* Slot above index: sorting the pairs keeps each slot's keys in
	 * their order. */
	packed = xmalloc(n * sizeof(*packed));
	for (size_t i = 0; i < n; i++) {
		slot[i] = (uint16_t)redis_keyslot(keys[i], lens[i]);
		packed[i] = (uint64_t)slot[i] << 48 | (uint64_t)i;
	}
	qsort(packed, n, sizeof(*packed), slots_cmp);
	for (size_t i = 0; i < n; i++)
		order[i] = (size_t)(packed[i] & 0xffffffffffffULL);
	free(packed);
}

size_t
redis_slots_run(const uint16_t *slot, const size_t *order, size_t n,
    size_t from)
{
	size_t i = from;

	while (i < n && slot[order[i]] == slot[order[from]])
		i++;
	return i - from;
}
