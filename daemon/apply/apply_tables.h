/*
 * What pginval apply derives from the [table] sections of its
 * configuration: for each table, the SCAN glob of each key template (for
 * sweeps); its rule's templates match keys for refreshes (rules_match()).
 * Built again from each configuration a reload brings. No I/O.
 */
#ifndef PGINVAL_APPLY_TABLES_H
#define PGINVAL_APPLY_TABLES_H

#include <stdbool.h>
#include <stddef.h>

#include "core/config.h"
#include "lib/strs.h"

struct apply_table {
	const struct table_rule *rule;	/* borrowed from the config */
	char **patterns;		/* one SCAN glob per template */
	size_t n;
};

struct apply_tables {
	struct apply_table *v;
	size_t n;
};

/* Replaces what ts holds with cfg's tables; ts borrows from cfg, which
 * must outlive it (or the next build). */
void apply_tables_build(struct apply_tables *ts, const struct config *cfg);
void apply_tables_free(struct apply_tables *ts);
/* The table called name ("schema.table"), or NULL. */
const struct apply_table *apply_tables_find(const struct apply_tables *ts,
    const char *name);

/*
 * The refresh rule: key is refreshed only when the table's FIRST template
 * produces it in exactly one way and no other template of the table
 * could produce it; its template columns, in order, are $1, $2... of the
 * query. Fills values (reset first) when it returns true.
 */
bool apply_table_refreshable(const struct apply_table *t, const char *key,
    size_t len, struct strs *values);

#endif
