/*
 * Unit tests for daemon/lib/esc.c: each escape form, UTF-8 that passes and
 * UTF-8 that does not, and cuts that fall only between whole escapes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../daemon/lib/esc.h"

#include "tcheck.h"

struct esc_case {
	const char *name;
	const char *in;
	size_t len;		/* 0: strlen(in) */
	const char *want;
};

static const struct esc_case esc_cases[] = {
	{ "plain ASCII", "user:42 ok", 0, "user:42 ok" },
	{ "empty", "", 0, "" },
	{ "backslash doubles", "a\\b", 0, "a\\\\b" },
	{ "newline, CR, tab", "a\nb\rc\td", 0, "a\\nb\\rc\\td" },
	{ "forged log line", "x\n<3>fake line", 0, "x\\n<3>fake line" },
	{ "ESC and BEL: OSC title", "42\x1b]0;pwned\x07", 0,
	    "42\\x1b]0;pwned\\x07" },
	{ "clear screen", "\x1b[2J", 0, "\\x1b[2J" },
	{ "NUL inside", "a\0b", 3, "a\\x00b" },
	{ "other C0", "\x01\x1f", 0, "\\x01\\x1f" },
	{ "DEL", "a\x7f", 0, "a\\x7f" },
	{ "C1 as UTF-8: CSI", "\xc2\x9b" "2J", 0, "\\u009b2J" },
	{ "C1 as UTF-8: first and last", "\xc2\x80\xc2\x9f", 0,
	    "\\u0080\\u009f" },
	{ "U+00A0 passes", "\xc2\xa0", 0, "\xc2\xa0" },
	{ "2-byte UTF-8 passes", "caf\xc3\xa9", 0, "caf\xc3\xa9" },
	{ "3-byte UTF-8 passes", "\xe2\x82\xac", 0, "\xe2\x82\xac" },
	{ "4-byte UTF-8 passes", "\xf0\x9f\x98\x80", 0, "\xf0\x9f\x98\x80" },
	{ "raw C1 byte, not UTF-8", "a\x9b" "2J", 0, "a\\x9b2J" },
	{ "stray continuation", "\x80", 0, "\\x80" },
	{ "overlong slash", "\xc0\xaf", 0, "\\xc0\\xaf" },
	{ "overlong 3-byte", "\xe0\x80\xaf", 0, "\\xe0\\x80\\xaf" },
	{ "surrogate", "\xed\xa0\x80", 0, "\\xed\\xa0\\x80" },
	{ "above U+10FFFF", "\xf4\x90\x80\x80", 0, "\\xf4\\x90\\x80\\x80" },
	{ "0xFF", "\xff", 0, "\\xff" },
	{ "truncated sequence", "ab\xe2\x82", 0, "ab\\xe2\\x82" },
	{ "lead byte then ASCII", "\xc3" "A", 0, "\\xc3A" },
};

static void
test_escapes(void **state)
{
	for (size_t i = 0; i < sizeof(esc_cases) / sizeof(esc_cases[0]); i++) {
		const struct esc_case *c = &esc_cases[i];
		size_t len = c->len ? c->len : strlen(c->in), used, n;
		char out[256];
		struct buf b = { 0 };

		tcase = c->name;
		n = esc_str(out, sizeof(out), c->in, len, &used);
		CHECK_STR(out, c->want);
		CHECK_INT(n, strlen(c->want));
		CHECK_INT(used, len);
		CHECK(esc_clean(c->in, len) == (strcmp(c->in, c->want) == 0 &&
		    len == strlen(c->in)));
		/* The worst case fits the documented bound. */
		CHECK(n <= ESC_MAX_RATIO * len);
		buf_add(&b, "<", 1);
		esc_buf(&b, c->in, len);
		CHECK_INT(b.len, n + 1);
		if (b.len == n + 1)
			t_check_mem(__LINE__, "esc_buf", b.data + 1, n, c->want,
			    strlen(c->want));
		buf_free(&b);
	}
	t_done();
}

struct cut_case {
	const char *name;
	const char *in;
	size_t cap;
	const char *want;
	size_t used;
};

/* A buffer too small stops before what would not fit whole. */
static const struct cut_case cut_cases[] = {
	{ "fits exactly", "abc", 4, "abc", 3 },
	{ "ASCII cut", "abcdef", 4, "abc", 3 },
	{ "never half an escape", "ab\x1b", 6, "ab", 2 },
	{ "a whole escape", "ab\x1b", 7, "ab\\x1b", 3 },
	{ "never half a character", "a\xe2\x82\xac", 4, "a", 1 },
	{ "never half a C1 escape", "a\xc2\x9b", 7, "a", 1 },
	{ "never half a backslash", "a\\", 3, "a", 1 },
	{ "cap 1", "abc", 1, "", 0 },
};

static void
test_cuts(void **state)
{
	for (size_t i = 0; i < sizeof(cut_cases) / sizeof(cut_cases[0]); i++) {
		const struct cut_case *c = &cut_cases[i];
		char out[64];
		size_t used, n;

		tcase = c->name;
		memset(out, 'Z', sizeof(out));
		n = esc_str(out, c->cap, c->in, strlen(c->in), &used);
		CHECK_STR(out, c->want);
		CHECK_INT(n, strlen(c->want));
		CHECK_INT(used, c->used);
		CHECK(out[c->cap] == 'Z');	/* nothing past cap */
	}
	t_done();
}

static void
test_utf8_char(void **state)
{
	unsigned cp = 0;

	assert_int_equal(esc_utf8_char((const unsigned char *)"\xe2\x82\xac", 3,
	    &cp), 3);
	assert_int_equal(cp, 0x20AC);
	assert_int_equal(esc_utf8_char((const unsigned char *)"\xf4\x8f\xbf\xbf",
	    4, &cp), 4);
	assert_int_equal(cp, 0x10FFFF);
	assert_int_equal(esc_utf8_char((const unsigned char *)"\xe2\x82\xac", 2,
	    NULL), 0);
	assert_int_equal(esc_utf8_char((const unsigned char *)"\xc1\xbf", 2,
	    NULL), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_cuts),
		cmocka_unit_test(test_utf8_char),
	};

	return cmocka_run_group_tests_name("esc", tests, NULL, NULL);
}
