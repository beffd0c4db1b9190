/*
 * A set of byte strings in insertion order, without duplicates. Keys are
 * binary-safe: use the lengths. Knows nothing of pginval.
 */
#ifndef PGINVAL_KEYS_H
#define PGINVAL_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

struct keys {
	struct buf data;	/* the keys, back to back */
	size_t n, cap;
	size_t *off, *len;
	/* Once a list grows, a hash index (key number + 1, 0 for empty)
	 * keeps the duplicate check from scanning the whole list. */
	uint32_t *index;
	size_t nindex;		/* slots: a power of two, or 0 */
};

/* Adds key unless the set holds it already. */
void keys_add(struct keys *k, const char *key, size_t len);
const char *keys_get(const struct keys *k, size_t i, size_t *len);
void keys_reset(struct keys *k);
void keys_free(struct keys *k);

#endif
