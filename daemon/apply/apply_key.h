/*
 * Pure helpers of pginval apply that work on cache keys: the name of a
 * key's invalidation marker (in the key's Redis Cluster hash slot) and
 * the slot itself. No I/O.
 */
#ifndef PGINVAL_APPLY_KEY_H
#define PGINVAL_APPLY_KEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

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

#endif
