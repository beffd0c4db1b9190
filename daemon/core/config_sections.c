/*
 * The sections of the configuration that name something: [table NAME]
 * (key templates, refresh queries) and [target NAME] (a Redis of pginval
 * apply). Part of the parser of config.c (see config_parse.h).
 */
#include "core/config.h"
#include "core/config_parse.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The name in a "[table NAME]" or "[target NAME]" header, trimmed. */
static char *
config_section_arg(const char *rest)
{
	size_t len;

	while (*rest == ' ' || *rest == '\t')
		rest++;
	len = strlen(rest);
	while (len > 0 && (rest[len - 1] == ' ' || rest[len - 1] == '\t'))
		len--;
	return xstrndup(rest, len);
}

/* The [table] entry named table, created on its first setting. */
static struct table_rule *
config_table_entry(struct parse_ctx *ctx, char *table)
{
	struct config *cfg = ctx->cfg;
	struct table_rule *t;

	for (size_t i = 0; i < cfg->ntables; i++)
		if (strcmp(cfg->tables[i].name, table) == 0) {
			free(table);
			return &cfg->tables[i];
		}
	cfg->tables = xrealloc(cfg->tables, (cfg->ntables + 1) * sizeof(*t));
	t = &cfg->tables[cfg->ntables++];
	memset(t, 0, sizeof(*t));
	t->name = table;
	t->line = ctx->section_line;
	t->ttl = 60;
	return t;
}

int
config_table_key(struct parse_ctx *ctx, const char *section_rest,
    const char *name, const char *value)
{
	struct table_rule *t;
	char err[256];
	char *table;
	double d;

	table = config_section_arg(section_rest);
	if (*table == '\0') {
		config_error(ctx, ctx->line, "[table] needs a name, such as "
		    "[table public.users]");
		goto fail;
	}
	if (strchr(table, '.') == NULL) {
		config_error(ctx, ctx->line, "[table %s]: name the schema too, "
		    "as in [table public.%s]", table, table);
		goto fail;
	}
	if (strcmp(name, "keys") != 0 && strcmp(name, "refresh") != 0 &&
	    strcmp(name, "ttl") != 0 && strcmp(name, "allow_wide_sweep") != 0) {
		config_error(ctx, ctx->line, "unknown setting \"%s\" in [table %s] "
		    "(expected: keys, refresh, ttl, allow_wide_sweep)", name,
		    table);
		goto fail;
	}
	t = config_table_entry(ctx, table);
	table = NULL;
	if (strcmp(name, "allow_wide_sweep") == 0) {
		bool yes = strcmp(value, "yes") == 0 || strcmp(value, "on") == 0 ||
		    strcmp(value, "true") == 0 || strcmp(value, "1") == 0;

		t->wide_line = ctx->line;
		if (!yes && strcmp(value, "no") != 0 && strcmp(value, "off") != 0 &&
		    strcmp(value, "false") != 0 && strcmp(value, "0") != 0) {
			config_error(ctx, ctx->line, "allow_wide_sweep in [table "
			    "%s]: \"%s\" is not yes or no", t->name, value);
			return 0;
		}
		t->allow_wide_sweep = yes;
		return 1;
	}
	if (strcmp(name, "keys") == 0) {
		if (t->keys_line != 0) {
			config_error(ctx, ctx->line, "[table %s] has keys already "
			    "(line %d); list all templates in one keys line",
			    t->name, t->line);
			return 0;
		}
		t->keys_line = ctx->line;
		if (rules_compile(value, &t->rules, err, sizeof(err)) == -1) {
			config_error(ctx, ctx->line, "[table %s] keys: %s", t->name,
			    err);
			return 0;
		}
		return 1;
	}
	if (strcmp(name, "refresh") == 0) {
		if (t->refresh_line != 0 || value[0] == '\0') {
			config_error(ctx, ctx->line, t->refresh_line != 0 ?
			    "[table %s] has a refresh query already" :
			    "[table %s] refresh is empty", t->name);
			return 0;
		}
		if (strstr(value, "$1") == NULL) {
			config_error(ctx, ctx->line, "[table %s] refresh: the query "
			    "must use $1 (the key's first template column)",
			    t->name);
			return 0;
		}
		t->refresh_line = ctx->line;
		t->refresh = xstrdup(value);
		return 1;
	}
	t->ttl_line = ctx->line;
	if (config_number(value, &d) == -1 || d < 0.001 || d > 31536000) {
		config_error(ctx, ctx->line, "ttl in [table %s]: \"%s\" is not a "
		    "duration from 1ms to 365 days (such as 60s)", t->name, value);
		return 0;
	}
	t->ttl = d;
	return 1;
fail:
	free(table);
	return 0;
}

int
config_target_key(struct parse_ctx *ctx, const char *section_rest,
    const char *name, const char *value)
{
	static const char *const keys[] = { "url", "cluster", "sentinels",
		"master", "sentinel_password" };
	struct config *cfg = ctx->cfg;
	struct apply_target_cfg *t = NULL;
	char *target = config_section_arg(section_rest);
	char **field;
	size_t k;

	if (*target == '\0' || strpbrk(target, " \t\"\\") != NULL) {
		config_error(ctx, ctx->line, "[target] needs a name of one word, "
		    "such as [target eu-west]");
		goto done;
	}
	for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
		if (strcmp(name, keys[k]) == 0)
			break;
	if (k == sizeof(keys) / sizeof(keys[0])) {
		config_error(ctx, ctx->line, "unknown setting \"%s\" in [target "
		    "%s] (expected: url, cluster, sentinels, master, "
		    "sentinel_password)", name, target);
		goto done;
	}
	for (size_t i = 0; i < cfg->ntargets; i++)
		if (strcmp(cfg->targets[i].name, target) == 0)
			t = &cfg->targets[i];
	if (t != NULL && t->line != ctx->section_line) {
		config_error(ctx, ctx->line, "[target %s] is given twice (line "
		    "%d)", target, t->line);
		goto done;
	}
	if (t == NULL) {
		cfg->targets = xrealloc(cfg->targets, (cfg->ntargets + 1) *
		    sizeof(*t));
		t = &cfg->targets[cfg->ntargets++];
		memset(t, 0, sizeof(*t));
		t->name = target;
		target = NULL;
		t->line = ctx->section_line;
	}
	field = k == 0 ? &t->url : k == 1 ? &t->cluster : k == 2 ?
	    &t->sentinels : k == 3 ? &t->master : &t->sentinel_password;
	if (*field != NULL) {
		config_error(ctx, ctx->line, "%s is given twice in [target %s]",
		    name, t->name);
		goto done;
	}
	*field = xstrdup(value);
	if (k == 0)
		t->url_line = ctx->line;
done:
	free(target);
	return 1;
}

void
config_check_targets(struct parse_ctx *ctx)
{
	struct config *cfg = ctx->cfg;
	char err[256];

	for (size_t i = 0; i < cfg->ntargets; i++) {
		struct apply_target_cfg *t = &cfg->targets[i];

		if (t->url == NULL && t->sentinels == NULL) {
			config_error(ctx, t->line, "[target %s] needs a url "
			    "(or sentinels and master)", t->name);
			continue;
		}
		if (redis_addr_parse(&t->addr, t->url ? t->url :
		    "redis://127.0.0.1", NULL, err, sizeof(err)) == -1)
			config_error(ctx, t->url_line, "[target %s] %s",
			    t->name, err);
		else if (redis_addr_topology(&t->addr, t->cluster,
		    t->sentinels, t->master, t->sentinel_password, err,
		    sizeof(err)) == -1)
			config_error(ctx, t->line, "[target %s] %s", t->name,
			    err);
	}
}

/*
 * A truncate or reset of a table removes the keys that match its
 * templates' patterns. A template that begins with a {column} makes a
 * pattern that begins with '*', which matches keys of other tables and
 * other applications as well ("{id}" matches every key): refused unless
 * the table says allow_wide_sweep.
 */
void
config_check_sweeps(struct parse_ctx *ctx, const struct table_rule *t)
{
	for (size_t i = 0; i < rules_count(t->rules); i++) {
		char *p;

		if (rules_prefixed(t->rules, i))
			continue;
		p = rules_pattern(t->rules, i);
		config_error(ctx, t->keys_line, "[table %s] keys: template %zu "
		    "begins with a {column}, so a truncate or reset of the table "
		    "would remove every key matching \"%s\", other "
		    "applications' keys too; begin each template with fixed "
		    "text (as in \"%s:{id}\"), or set allow_wide_sweep = yes in "
		    "[table %s] if this Redis holds nothing else that matches",
		    t->name, i + 1, p, strchr(t->name, '.') + 1, t->name);
		free(p);
	}
}
