/*
 * A set of byte strings that keeps the order of insertion and drops
 * duplicates: the keys one change makes stale. A short set is scanned;
 * a longer one gets an open-addressing hash index. Knows nothing of
 * pginval.
 */
#include "lib/keys.h"
#include "lib/xalloc.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define KEYS_INDEX_FROM 16	/* a linear scan is cheaper below this */

/* 8 bytes a step, then a finaliser (MurmurHash3's) that spreads every
 * byte into the low bits the index uses. */
static size_t
keys_hash(const char *s, size_t len)
{
	uint64_t h = 0x9e3779b97f4a7c15u ^ len, w;

	for (; len >= 8; s += 8, len -= 8) {
		memcpy(&w, s, sizeof(w));
		h = (h ^ w) * 0x100000001b3u;
		h ^= h >> 29;
	}
	w = 0;
	memcpy(&w, s, len);
	h = (h ^ w) * 0x100000001b3u;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdu;
	h ^= h >> 33;
	return (size_t)h;
}

static bool
keys_equal(const struct keys *k, size_t i, const char *key, size_t len)
{
	return k->len[i] == len && memcmp(k->data.data + k->off[i], key, len) == 0;
}

/* Puts key number i, whose hash is h, in the index, which has room. */
static void
keys_index_put(struct keys *k, size_t i, size_t h)
{
	size_t mask = k->nindex - 1;

	h &= mask;
	while (k->index[h] != 0)
		h = (h + 1) & mask;
	k->index[h] = (uint32_t)(i + 1);
}

/* Rebuilds the index at twice the keys' number, or more. */
static void
keys_reindex(struct keys *k)
{
	size_t want = 64;

	while (want < 2 * (k->n + 1))
		want *= 2;
	free(k->index);
	k->index = xcalloc(want, sizeof(*k->index));
	k->nindex = want;
	for (size_t i = 0; i < k->n; i++)
		keys_index_put(k, i, keys_hash(k->data.data + k->off[i],
		    k->len[i]));
}

void
keys_add(struct keys *k, const char *key, size_t len)
{
	bool indexed = k->n >= KEYS_INDEX_FROM;
	size_t hash = 0;

	if (indexed) {
		size_t mask, h;

		if (k->nindex < 2 * (k->n + 1))
			keys_reindex(k);
		mask = k->nindex - 1;
		hash = keys_hash(key, len);
		for (h = hash & mask; k->index[h] != 0; h = (h + 1) & mask)
			if (keys_equal(k, k->index[h] - 1, key, len))
				return;
	} else {
		for (size_t i = 0; i < k->n; i++)
			if (keys_equal(k, i, key, len))
				return;
	}
	if (k->n == k->cap) {
		k->cap = k->cap ? k->cap * 2 : 8;
		k->off = xrealloc(k->off, k->cap * sizeof(*k->off));
		k->len = xrealloc(k->len, k->cap * sizeof(*k->len));
	}
	k->off[k->n] = k->data.len;
	k->len[k->n] = len;
	k->n++;
	buf_add(&k->data, key, len);
	/* An index kept through keys_reset() takes the short sets too. */
	if (k->nindex > 0)
		keys_index_put(k, k->n - 1, indexed ? hash :
		    keys_hash(k->data.data + k->off[k->n - 1], len));
}

const char *
keys_get(const struct keys *k, size_t i, size_t *len)
{
	*len = k->len[i];
	return k->data.data + k->off[i];
}

void
keys_reset(struct keys *k)
{
	k->n = 0;
	buf_reset(&k->data);
	if (k->index != NULL)
		memset(k->index, 0, k->nindex * sizeof(*k->index));
}

void
keys_free(struct keys *k)
{
	buf_free(&k->data);
	free(k->off);
	free(k->len);
	free(k->index);
	memset(k, 0, sizeof(*k));
}
