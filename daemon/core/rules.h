/*
 * Key rules: the templates of one [table] section, such as
 * "user:{id}, user:email:{email}", compiled once and rendered for each
 * event. "{{" and "}}" stand for literal braces; templates are separated by
 * commas. Pure: no I/O.
 */
#ifndef PGINVAL_RULES_H
#define PGINVAL_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/decode.h"
#include "lib/keys.h"
#include "lib/strs.h"

struct rule_set;

/* Compiles spec into *out (owned by the caller, rules_free()). On error,
 * returns -1 and err says what is wrong. */
int rules_compile(const char *spec, struct rule_set **out, char *err,
    size_t errlen) __attribute__((warn_unused_result));
void rules_free(struct rule_set *rs);
size_t rules_count(const struct rule_set *rs);
/* The columns that templates need, comma-separated, for messages that help
 * the user (e.g. "id, email"). Owned by rs. */
const char *rules_columns(const struct rule_set *rs);

/*
 * Appends the keys that ev made stale: every template rendered with the
 * old row and with the new one (of every row, for a payload about several),
 * without duplicates. A template whose
 * column is NULL in a row yields no key for that row. Returns -1 when a
 * template names a column that the row lacks (err says which): the caller
 * must then treat the whole table as stale.
 */
int rules_render(const struct rule_set *rs, const struct event *ev,
    struct keys *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* A glob for SCAN MATCH that matches every key template i can produce:
 * columns become '*', glob characters in the literal text are escaped.
 * The caller frees the result. */
char *rules_pattern(const struct rule_set *rs, size_t i);
/*
 * Whether template i begins with literal text. Only then does its pattern
 * stay within the keys that begin with that text: "user:{id}" sweeps
 * "user:*", while "{id}" sweeps "*" (every key of the database) and
 * "{tenant}:user:{id}" sweeps "*:user:*" (any key holding ":user:").
 */
bool rules_prefixed(const struct rule_set *rs, size_t i);

/*
 * Matches key against template i, the way back from rules_render():
 * returns how many ways the key splits into the template's literal text
 * and column values, capped at 2 (2: ambiguous, or too costly to tell).
 * When exactly 1, values receives the column values in template order
 * (values is reset first).
 */
int rules_match(const struct rule_set *rs, size_t i, const char *key,
    size_t len, struct strs *values);

#endif
