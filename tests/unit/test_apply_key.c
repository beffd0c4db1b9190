/*
 * Unit tests for daemon/apply/apply_key.c: hash slots, marker names (every
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

#include "../../daemon/apply/apply_key.h"

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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_slots),
		cmocka_unit_test(test_marker_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
