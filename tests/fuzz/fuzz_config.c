/*
 * Fuzzing of the configuration parser: config_parse() on the input as a
 * file. A valid configuration must be internally consistent; an invalid
 * one must say why, one "NAME:..." line per problem.
 *
 * password_file settings make the parser open files. So that the fuzzer
 * never opens whatever it can spell (a FIFO, a terminal), an input is
 * used only if each password_file it holds names one of a few files:
 * one that does not exist, an empty one and a one-line one.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../daemon/core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NAME "fuzz.conf"

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_config: %s\n", what);
	abort();
}

static const char *const safe_files[] = {
	"/nonexistent/pginval/secret",
	"/dev/null",
	"/proc/self/comm",
};

/*
 * Whether every password_file in data[0..size) names a safe file. Lines
 * are read as inih reads them (up to a newline or a NUL, the value after
 * the first '=' or ':', blanks trimmed); a mention anywhere else in a line
 * is treated as a setting too, which at worst drops a harmless input.
 */
static int
secrets_safe(const char *data, size_t size)
{
	static const char key[] = "password_file";
	const char *end = data + size;

	for (const char *p = data; (size_t)(end - p) >= sizeof(key) - 1; p++) {
		const char *v = p + sizeof(key) - 1, *e;
		size_t i, n;

		if (memcmp(p, key, sizeof(key) - 1) != 0)
			continue;
		while (v < end && *v != '\n' && *v != '\0' && *v != '=' && *v != ':')
			v++;
		if (v < end && (*v == '=' || *v == ':')) {
			v++;
			for (e = v; e < end && *e != '\n' && *e != '\0'; e++)
				;
			while (v < e && isspace((unsigned char)*v))
				v++;
			while (e > v && isspace((unsigned char)e[-1]))
				e--;
			n = (size_t)(e - v);
			for (i = 0; i < sizeof(safe_files) / sizeof(safe_files[0]); i++)
				if (strlen(safe_files[i]) == n &&
				    memcmp(safe_files[i], v, n) == 0)
					break;
			if (n > 0 && i == sizeof(safe_files) / sizeof(safe_files[0]))
				return 0;
		}
	}
	return 1;
}

static void
check_config(const struct config *cfg)
{
	if (cfg->pg_conninfo == NULL || cfg->pg_channel == NULL ||
	    cfg->redis_url == NULL || cfg->redis_channel == NULL ||
	    cfg->redis.where == NULL)
		fail("a valid configuration lacks a required setting");
	if ((cfg->redis.host == NULL) == (cfg->redis.unix_path == NULL))
		fail("redis needs exactly one of a host and a socket");
	if (cfg->redis.port < 1 || cfg->redis.port > 65535 || cfg->redis.db < 0)
		fail("redis port or database out of range");
	if (cfg->max_queue < 1 || cfg->max_inflight < 1 ||
	    cfg->reconnect_min > cfg->reconnect_max)
		fail("daemon limits out of range");
	if (cfg->pg_password_file != NULL && (cfg->pg_password == NULL ||
	    cfg->pg_password[0] == '\0'))
		fail("a password_file was accepted without a password");
	if (cfg->redis_password_file != NULL && (cfg->redis.password == NULL ||
	    cfg->redis.password[0] == '\0'))
		fail("a password_file was accepted without a password");
	(void)config_holds_secret(cfg);
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
	if (!secrets_safe((const char *)data, size)) {
		free(copy);
		return 0;
	}
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
