/*
 * The [table] sections as pginval apply uses them. A table's patterns
 * feed its sweeps; its matchers decide which keys a refresh may fill
 * (apply_table_refreshable()), and recover the query's parameters.
 */
#include "apply/apply_tables.h"
#include "lib/buf.h"
#include "core/rules.h"
#include "lib/xalloc.h"

#include <stdlib.h>
#include <string.h>

void
apply_tables_free(struct apply_tables *ts)
{
	for (size_t i = 0; i < ts->n; i++) {
		struct apply_table *t = &ts->v[i];

		for (size_t j = 0; j < t->n; j++)
			free(t->patterns[j]);
		free(t->patterns);
	}
	free(ts->v);
	ts->v = NULL;
	ts->n = 0;
}

void
apply_tables_build(struct apply_tables *ts, const struct config *cfg)
{
	apply_tables_free(ts);
	ts->v = xcalloc(cfg->ntables + 1, sizeof(*ts->v));
	ts->n = cfg->ntables;
	for (size_t i = 0; i < cfg->ntables; i++) {
		struct apply_table *t = &ts->v[i];

		t->rule = &cfg->tables[i];
		t->n = rules_count(t->rule->rules);
		t->patterns = xcalloc(t->n, sizeof(*t->patterns));
		for (size_t j = 0; j < t->n; j++)
			t->patterns[j] = rules_pattern(t->rule->rules, j);
	}
}

const struct apply_table *
apply_tables_find(const struct apply_tables *ts, const char *name)
{
	for (size_t i = 0; i < ts->n; i++)
		if (strcmp(ts->v[i].rule->name, name) == 0)
			return &ts->v[i];
	return NULL;
}

bool
apply_table_refreshable(const struct apply_table *t, const char *key,
    size_t len, struct strs *values)
{
	const struct rule_set *rs = t->rule->rules;

	if (t->rule->refresh == NULL || rules_match(rs, 0, key, len,
	    values) != 1)
		return false;
	for (size_t j = 1; j < t->n; j++) {
		struct strs other = { 0 };
		int n = rules_match(rs, j, key, len, &other);

		strs_free(&other);
		if (n > 0)
			return false;
	}
	return true;
}
