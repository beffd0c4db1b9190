/*
 * Pure helpers of pginval apply that work on cache keys: the name of a
 * key's invalidation marker (in the key's Redis Cluster hash slot), the
 * slot itself, and matching a key against a key template to recover the
 * column values a refresh query needs. No I/O.
 */
#ifndef PGINVAL_APPLY_KEY_H
#define PGINVAL_APPLY_KEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "rules.h"

#define APPLY_MARKER_PREFIX "pginval:m:"

/* The Redis Cluster slot of key: CRC16 (XMODEM) of its hash tag, or of
 * the whole key when it has none, modulo 16384. */
unsigned apply_key_slot(const char *key, size_t len);

/*
 * Appends the marker's name for key to out. The rule, which the recipes
 * in the README repeat:
 *   - key has a hash tag {t} (the bytes between its first '{' and the
 *     first '}' after it, not empty): "pginval:m:{t}:" + key;
 *   - otherwise, if key is not empty and holds no '}':
 *     "pginval:m:{" + key + "}";
 *   - otherwise (no tag, and a '}' that a tag cannot hold, or nothing):
 *     "pginval:m:{N}:" + key, N being the smallest decimal number whose
 *     slot is the key's.
 */
void apply_marker_name(const char *key, size_t len, struct buf *out);

/* A list of byte strings, duplicates kept (struct keys drops them). */
struct apply_strs {
	struct buf data;
	size_t n, cap;
	size_t *off, *len;
};

void apply_strs_add(struct apply_strs *s, const char *p, size_t len);
/* The i-th string; NUL-terminated, since each one is stored with a NUL. */
const char *apply_strs_get(const struct apply_strs *s, size_t i, size_t *len);
void apply_strs_reset(struct apply_strs *s);
void apply_strs_free(struct apply_strs *s);

/* A key template as a matcher: literal pieces and column slots. */
struct apply_tpl {
	struct apply_strs lits;	/* ncols + 1 pieces: before each column, and after the last */
	size_t ncols;
};

/* Builds a matcher for template i of rs (from rules_pattern()). */
void apply_tpl_init(struct apply_tpl *t, const struct rule_set *rs, size_t i);
void apply_tpl_free(struct apply_tpl *t);

/*
 * Matches key against t. Returns how many ways the key splits into the
 * template's literals and column values, capped at 2 (2: ambiguous, or
 * too costly to tell). When exactly 1, values receives the column values
 * in template order (values is reset first).
 */
int apply_tpl_match(const struct apply_tpl *t, const char *key, size_t len,
    struct apply_strs *values);

#endif
