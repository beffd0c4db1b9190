/*
 * Fuzzing of the configuration parser: config_parse() on the input as a
 * file. A valid configuration must be internally consistent; an invalid
 * one must say why, one "NAME:..." line per problem.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../daemon/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NAME "fuzz.conf"

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_config: %s\n", what);
	abort();
}

static void
check_config(const struct config *cfg)
{
	if (cfg->pg_conninfo == NULL || cfg->pg_channel == NULL ||
	    cfg->redis_url == NULL || cfg->redis_channel == NULL ||
	    cfg->redis_where == NULL)
		fail("a valid configuration lacks a required setting");
	if ((cfg->redis_host == NULL) == (cfg->redis_unix == NULL))
		fail("redis needs exactly one of a host and a socket");
	if (cfg->redis_port < 1 || cfg->redis_port > 65535 || cfg->redis_db < 0)
		fail("redis port or database out of range");
	if (cfg->max_queue < 1 || cfg->max_inflight < 1 ||
	    cfg->reconnect_min > cfg->reconnect_max)
		fail("daemon limits out of range");
	for (size_t i = 0; i < cfg->ntables; i++) {
		const struct table_rule *t = &cfg->tables[i];

		if (t->name == NULL || strchr(t->name, '.') == NULL ||
		    t->rules == NULL || rules_count(t->rules) == 0)
			fail("a table section is incomplete");
		if (config_table(cfg, t->name) != t)
			fail("config_table does not find a table, or finds two");
		for (size_t j = 0; j < rules_count(t->rules); j++)
			free(rules_pattern(t->rules, j));
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* fmemopen() needs a writable buffer, and one of at least a byte. */
	char *copy = malloc(size ? size : 1);
	struct config *cfg = (struct config *)&cfg;
	char *errors = (char *)&errors;
	FILE *f;
	int rc;

	if (copy == NULL)
		abort();
	memcpy(copy, data, size);
	f = fmemopen(copy, size, "r");
	if (f == NULL) {
		free(copy);
		return 0;
	}
	rc = config_parse(f, NAME, &cfg, &errors);
	fclose(f);
	if (rc == 0) {
		if (cfg == NULL || errors != NULL)
			fail("success without a configuration, or with errors");
		check_config(cfg);
		config_free(cfg);
	} else {
		if (rc != -1 || cfg != NULL || errors == NULL || errors[0] == '\0')
			fail("failure without an error message");
		/* Every line names the file. */
		for (const char *l = errors; l != NULL; l = strchr(l, '\n')) {
			if (*l == '\n')
				l++;
			if (strncmp(l, NAME ":", sizeof(NAME)) != 0)
				fail("an error line does not start with the file name");
		}
		free(errors);
	}
	free(copy);
	return 0;
}
