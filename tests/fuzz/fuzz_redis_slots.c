/*
 * Fuzzing of what pginval reads from Redis Cluster and replication
 * replies: redis_slots_parse() and redis_role_offset() on every reply
 * hiredis's reader makes of the input (RESP bytes, as a server would send
 * them), and redis_err_classify(), redis_info_parse() and redis_keyslot()
 * on the raw bytes, from an exact-size copy so that any read past len is
 * caught. Properties checked:
 *   - a parsed map is whole: every slot's owner is a master, masters are
 *     unique, hosts are printable and short, ports within 1..65535, and
 *     no two masters share an address or a node id (as a master's or a
 *     replica's);
 *   - a failed parse leaves the map it was given as it was;
 *   - a redirect names a slot < 16384, a port 1..65535, a short host;
 *   - the key slot equals a bit-by-bit CRC16 of the hash tag rule, and
 *     grouping keys by slot gives runs of one slot in ascending order;
 *   - INFO fields read are 40 hex digits, and the history verdict's
 *     reason always ends within its buffer.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "../../daemon/lib/redis_cap.h"
#include "../../daemon/lib/redis_history.h"
#include "../../daemon/lib/redis_slots.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What one reply may cost in hiredis's reader (redis_cap.h), as in the
 * daemon: without it an input of a few kB declares arrays of millions of
 * elements, which hiredis allocates as it reads their counts. */
#define FUZZ_REPLY_MAX (1 << 20)

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_redis_slots: %s\n", what);
	abort();
}

/* The slot by the rule, written apart from the module: bit by bit. */
static unsigned
ref_keyslot(const unsigned char *k, size_t n)
{
	size_t s, e;
	uint16_t crc = 0;

	for (s = 0; s < n && k[s] != '{'; s++)
		;
	if (s < n) {
		for (e = s + 1; e < n && k[e] != '}'; e++)
			;
		if (e < n && e > s + 1) {
			k += s + 1;
			n = e - s - 1;
		}
	}
	for (size_t i = 0; i < n; i++) {
		crc ^= (uint16_t)(k[i] << 8);
		for (int b = 0; b < 8; b++)
			crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 :
			    crc << 1);
	}
	return crc % 16384;
}

static bool
printable(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

/* No master before master i has its address, or its id as its own or a
 * replica's. */
static bool
unique_master(const struct redis_slot_map *m, size_t i)
{
	const struct redis_node *n = &m->masters[i];

	for (size_t k = 0; k < i; k++) {
		const struct redis_node *o = &m->masters[k];

		if (o->port == n->port && strcmp(o->host, n->host) == 0)
			return false;
		if (strcmp(o->id, n->id) == 0)
			return false;
		for (size_t j = 0; j < o->nreplicas; j++)
			if (strcmp(o->replicas[j], n->id) == 0)
				return false;
	}
	return true;
}

static void
check_map(const struct redis_slot_map *m)
{
	if (m->nmasters == 0 || m->nmasters > REDIS_SLOTS)
		fail("a map without masters");
	for (size_t s = 0; s < REDIS_SLOTS; s++)
		if (m->owner[s] >= m->nmasters)
			fail("a slot without a master");
	for (size_t i = 0; i < m->nmasters; i++) {
		const struct redis_node *n = &m->masters[i];

		if (!printable(n->host, REDIS_HOST_MAX) || !printable(n->id, 64))
			fail("a bad host or id");
		if (n->port < 1 || n->port > 65535)
			fail("a bad port");
		if (!unique_master(m, i))
			fail("a master's address or id given twice");
		for (size_t j = 0; j < n->nreplicas; j++)
			if (!printable(n->replicas[j], 64))
				fail("a bad replica id");
	}
}

static void
check_reply(const redisReply *r, struct redis_slot_map *keep)
{
	struct redis_slot_map m = { 0 };
	char err[256];
	bool master;
	long long offset;

	if (redis_slots_parse(&m, r, "seed.example", err, sizeof(err)) == 0) {
		check_map(&m);
		redis_slots_free(&m);
	} else if (strlen(err) >= sizeof(err)) {
		fail("an unterminated error");
	}
	/* keep holds a map: a failed parse must leave it whole. */
	if (redis_slots_parse(keep, r, "seed.example", err, sizeof(err)) < 0 &&
	    keep->nmasters > 0)
		check_map(keep);
	if (redis_role_offset(r, &master, &offset) == 0 &&
	    offset < (master ? 0 : -1))
		fail("a negative offset");
	if (r->type == REDIS_REPLY_ERROR || r->type == REDIS_REPLY_STATUS ||
	    r->type == REDIS_REPLY_STRING)
		(void)redis_err_classify(r->str, r->len, NULL);
}

static void
check_raw(const char *d, size_t n)
{
	struct redis_redirect rd;
	enum redis_err_kind k = redis_err_classify(d, n, &rd);
	struct redis_node_info in;

	if ((k == REDIS_ERR_MOVED || k == REDIS_ERR_ASK) &&
	    (rd.slot >= REDIS_SLOTS || rd.port < 1 || rd.port > 65535 ||
	    strlen(rd.host) > REDIS_HOST_MAX))
		fail("a bad redirect");
	if (redis_keyslot(d, n) != ref_keyslot((const unsigned char *)d, n))
		fail("the key slot differs from the rule");
	if (redis_info_parse(d, n, &in) == 0) {
		struct redis_history h = { 0 };
		char why[64];

		if (strlen(in.run_id) != 40 || strlen(in.replid) != 40 ||
		    strlen(in.replid2) != 40 || in.offset < 0 ||
		    in.second_offset < -1)
			fail("bad INFO fields");
		redis_history_learn(&h, &in);
		for (uint64_t m = 1; m <= 40; m++)	/* past a thinning */
			redis_history_confirm(&h, (long long)m * 10, m);
		(void)redis_history_check(&h, &in, why, sizeof(why));
		if (strlen(why) >= sizeof(why))
			fail("an unterminated reason");
		if (redis_history_kept(&h, &in) > 40 ||
		    h.nmarks > REDIS_HISTORY_MARKS)
			fail("a checkpoint out of range");
	}
}

/* Keys are the input's lines: grouped, each run is one slot, ascending. */
static void
check_group(const char *d, size_t n)
{
	const char *keys[64];
	size_t lens[64], order[64], nk = 0, run;
	uint16_t slot[64];

	for (size_t i = 0, start = 0; i <= n && nk < 64; i++)
		if (i == n || d[i] == '\n') {
			keys[nk] = d + start;
			lens[nk++] = i - start;
			start = i + 1;
		}
	redis_slots_group(keys, lens, nk, slot, order);
	for (size_t i = 0; i < nk; i += run) {
		run = redis_slots_run(slot, order, nk, i);
		if (run == 0 || i + run > nk)
			fail("a bad run");
		for (size_t j = i; j < i + run; j++)
			if (slot[order[j]] != slot[order[i]] ||
			    (j > i && order[j] <= order[j - 1]))
				fail("a run mixes slots or reorders keys");
		if (i > 0 && slot[order[i - 1]] >= slot[order[i]])
			fail("runs out of order");
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size > 0 ? size : 1);
	struct redis_slot_map keep = { 0 };
	struct redis_cap cap = { .max = FUZZ_REPLY_MAX };
	redisReader *rd;
	void *reply;

	memcpy(copy, data, size);
	check_raw(copy, size);
	check_group(copy, size);
	rd = redisReaderCreate();
	redis_cap_attach(&cap, rd);
	if (redisReaderFeed(rd, copy, size) == REDIS_OK)
		for (int i = 0; i < 64; i++) {
			reply = NULL;
			if (redisReaderGetReply(rd, &reply) != REDIS_OK ||
			    reply == NULL)
				break;
			check_reply(reply, &keep);
			freeReplyObject(reply);
			redis_cap_next(&cap);
		}
	redisReaderFree(rd);
	redis_slots_free(&keep);
	free(copy);
	return 0;
}
