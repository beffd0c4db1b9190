/*
 * Unit tests for daemon/apply_key.c: hash slots, marker names (every
 * marker must land in its key's slot) and key template matching for
 * refreshes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../daemon/apply_key.h"

#include "tcheck.h"

static void
test_slots(void **state)
{
	/* Values from Redis's CLUSTER KEYSLOT. */
	static const struct { const char *key; unsigned slot; } cases[] = {
		{ "foo", 12182 }, { "somekey", 11058 }, { "hello", 866 },
		{ "{foo}bar", 12182 }, { "x{foo}y", 12182 },
		{ "{}foo", 0 },		/* empty tag: the whole key counts */
		{ "foo{", 0 }, { "foo}", 0 },
	};

	(void)state;
	tfails = 0;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned got = apply_key_slot(cases[i].key, strlen(cases[i].key));

		tcase = cases[i].key;
		if (cases[i].slot != 0 && got != cases[i].slot)
			t_fail(__LINE__, "slot %u, want %u", got, cases[i].slot);
		if (got > 16383)
			t_fail(__LINE__, "slot %u out of range", got);
	}
	t_done();
}

static void
test_marker_names(void **state)
{
	static const struct { const char *name, *key, *marker; } cases[] = {
		{ "plain", "user:42", "pginval:m:{user:42}" },
		{ "empty", "", "pginval:m:{3560}:" },
		{ "tag", "{user:42}:profile", "pginval:m:{user:42}:{user:42}:profile" },
		{ "tag inside", "a{b}c", "pginval:m:{b}:a{b}c" },
		{ "first tag wins", "{a}{b}", "pginval:m:{a}:{a}{b}" },
		{ "brace in tag", "{{a}", "pginval:m:{{a}:{{a}" },
		{ "empty tag", "{}x", "pginval:m:{19354}:{}x" },
		{ "lone open", "{", "pginval:m:{{}" },
		{ "open only", "user:{42", "pginval:m:{user:{42}" },
		{ "close only", "a}b", "pginval:m:{20658}:a}b" },
		{ "empty tag then close", "{}x}", "pginval:m:{20679}:{}x}" },
		{ "lone close", "}", "pginval:m:{5305}:}" },
	};
	struct buf b = { 0 };

	(void)state;
	tfails = 0;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *k = cases[i].key;

		tcase = cases[i].name;
		buf_reset(&b);
		apply_marker_name(k, strlen(k), &b);
		if (b.len != strlen(cases[i].marker) ||
		    memcmp(b.data, cases[i].marker, b.len) != 0)
			t_fail(__LINE__, "marker \"%.*s\", want \"%s\"", (int)b.len,
			    b.data, cases[i].marker);
		if (apply_key_slot(b.data, b.len) != apply_key_slot(k, strlen(k)))
			t_fail(__LINE__, "marker slot %u, key slot %u",
			    apply_key_slot(b.data, b.len),
			    apply_key_slot(k, strlen(k)));
	}
	/* Binary keys: every single byte, and NUL inside a key. */
	for (int c = 0; c < 256; c++) {
		char k[3] = { 'k', (char)c, '}' };

		tcase = "binary";
		for (size_t len = 2; len <= 3; len++) {
			buf_reset(&b);
			apply_marker_name(k, len, &b);
			if (apply_key_slot(b.data, b.len) != apply_key_slot(k, len))
				t_fail(__LINE__, "byte %d, length %zu: slots differ",
				    c, len);
		}
	}
	buf_free(&b);
	t_done();
}

static void
test_template_match(void **state)
{
	static const struct {
		const char *name, *spec, *key;
		int found;
		const char *values[3];
	} cases[] = {
		{ "one column", "user:{id}", "user:42", 1, { "42" } },
		{ "value with colons", "user:{id}", "user:a:b", 1, { "a:b" } },
		{ "no match", "user:{id}", "order:42", 0, { NULL } },
		{ "prefix only", "user:{id}", "user", 0, { NULL } },
		{ "empty value", "user:{id}", "user:", 1, { "" } },
		{ "suffix", "user:{id}:profile", "user:7:profile", 1, { "7" } },
		{ "two columns", "o:{a}/{b}", "o:1/2", 1, { "1", "2" } },
		{ "ambiguous", "o:{a}:{b}", "o:1:2:3", 2, { NULL } },
		{ "adjacent columns", "{a}{b}", "xy", 2, { NULL } },
		{ "glob characters", "k*[{id}]?", "k*[5]?", 1, { "5" } },
		{ "braces", "{{{id}}}", "{9}", 1, { "9" } },
		{ "no columns", "static", "static", 1, { NULL } },
		{ "three", "{a}.{b}.{c}!", "1.2.3!", 1, { "1", "2", "3" } },
	};

	(void)state;
	tfails = 0;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rule_set *rs;
		struct apply_tpl t;
		struct apply_strs v = { 0 };
		char err[128];
		int found;

		tcase = cases[i].name;
		if (rules_compile(cases[i].spec, &rs, err, sizeof(err)) == -1) {
			t_fail(__LINE__, "compile: %s", err);
			continue;
		}
		apply_tpl_init(&t, rs, 0);
		found = apply_tpl_match(&t, cases[i].key, strlen(cases[i].key), &v);
		if (found != cases[i].found)
			t_fail(__LINE__, "found %d, want %d", found, cases[i].found);
		for (size_t j = 0; found == 1 && j < 3 && cases[i].values[j]; j++) {
			const char *got = j < v.n ? apply_strs_get(&v, j, NULL) : "(none)";

			if (strcmp(got, cases[i].values[j]) != 0)
				t_fail(__LINE__, "value %zu \"%s\", want \"%s\"", j, got,
				    cases[i].values[j]);
		}
		apply_strs_free(&v);
		apply_tpl_free(&t);
		rules_free(rs);
	}
	t_done();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_slots),
		cmocka_unit_test(test_marker_names),
		cmocka_unit_test(test_template_match),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
