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

static uint32_t
keys_hash(const char *s, size_t len)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h;
}

static bool
keys_equal(const struct keys *k, size_t i, const char *key, size_t len)
{
	return k->len[i] == len && memcmp(k->data.data + k->off[i], key, len) == 0;
}

/* Puts key number i in the index, which has room. */
static void
keys_index_put(struct keys *k, size_t i)
{
	size_t mask = k->nindex - 1;
	size_t h = keys_hash(k->data.data + k->off[i], k->len[i]) & mask;

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
		keys_index_put(k, i);
}

void
keys_add(struct keys *k, const char *key, size_t len)
{
	if (k->n >= KEYS_INDEX_FROM) {
		size_t mask, h;

		if (k->nindex < 2 * (k->n + 1))
			keys_reindex(k);
		mask = k->nindex - 1;
		for (h = keys_hash(key, len) & mask; k->index[h] != 0;
		    h = (h + 1) & mask)
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
	if (k->nindex > 0)
		keys_index_put(k, k->n - 1);
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
