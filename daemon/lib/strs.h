/*
 * A list of byte strings, duplicates kept (struct keys drops them).
 * Knows nothing of pginval.
 */
#ifndef PGINVAL_STRS_H
#define PGINVAL_STRS_H

#include <stddef.h>

#include "lib/buf.h"

struct strs {
	struct buf data;
	size_t n, cap;
	size_t *off, *len;
};

void strs_add(struct strs *s, const char *p, size_t len);
/* The i-th string; NUL-terminated, since each one is stored with a NUL.
 * len may be NULL. */
const char *strs_get(const struct strs *s, size_t i, size_t *len);
void strs_reset(struct strs *s);
void strs_free(struct strs *s);

#endif
