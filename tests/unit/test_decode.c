/*
 * Unit tests for daemon/core/decode.c: the trigger payloads of sql/pginval.sql,
 * and everything else a NOTIFY channel might carry.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../daemon/lib/buf.h"
#include "../../daemon/core/decode.h"

#include "tcheck.h"

static const char *const result_names[] = { "OK", "TABLE_ONLY", "JUNK" };

/* ------------------------------------------------------------------ */

#define MAXCOLS 12

struct col {
	const char *name;
	const char *val;	/* NULL: SQL NULL */
};

struct image {
	bool present;
	size_t n;
	struct col cols[MAXCOLS];
};

struct decode_case {
	const char *name;
	const char *payload;
	enum decode_result want;
	const char *table;	/* for OK and TABLE_ONLY */
	const char *err;	/* a substring of err, for TABLE_ONLY and JUNK */
	/* for OK */
	enum event_op op;
	int64_t ts;
	bool big;
	struct image old, new;
};

#define IMG(...) { true, sizeof((struct col[]){ __VA_ARGS__ }) / \
	sizeof(struct col), { __VA_ARGS__ } }
#define NOIMG { false, 0, { { NULL, NULL } } }
#define EMPTYIMG { true, 0, { { NULL, NULL } } }

/* A case that is not DECODE_OK: only the table and the reason matter. */
#define BAD(n, p, w, t, e) { .name = (n), .payload = (p), .want = (w), \
	.table = (t), .err = (e) }

#define HEAD(op) "{\"v\":1,\"t\":\"public.users\",\"op\":\"" op \
	"\",\"ts\":1764240000123456,\"x\":1234"
#define TS 1764240000123456LL

static const struct decode_case decode_cases[] = {
	/* What the triggers send. */
	{ "insert", HEAD("insert") ",\"n\":{\"id\":\"42\",\"email\":\"a@x.io\"}}",
	    DECODE_OK, "public.users", NULL, EVENT_INSERT, TS, false, NOIMG,
	    IMG({ "id", "42" }, { "email", "a@x.io" }) },
	{ "update", HEAD("update") ",\"o\":{\"id\":\"42\",\"email\":\"a@x.io\"},"
	    "\"n\":{\"id\":\"42\",\"email\":\"b@x.io\"}}",
	    DECODE_OK, "public.users", NULL, EVENT_UPDATE, TS, false,
	    IMG({ "id", "42" }, { "email", "a@x.io" }),
	    IMG({ "id", "42" }, { "email", "b@x.io" }) },
	{ "delete", HEAD("delete") ",\"o\":{\"id\":\"7\"}}",
	    DECODE_OK, "public.users", NULL, EVENT_DELETE, TS, false,
	    IMG({ "id", "7" }), NOIMG },
	{ "truncate", HEAD("truncate") "}",
	    DECODE_OK, "public.users", NULL, EVENT_TRUNCATE, TS, false,
	    NOIMG, NOIMG },
	{ "truncate ignores images", HEAD("truncate") ",\"o\":{\"id\":\"1\"}}",
	    DECODE_OK, "public.users", NULL, EVENT_TRUNCATE, TS, false,
	    NOIMG, NOIMG },
	{ "big update", HEAD("update") ",\"big\":true}",
	    DECODE_OK, "public.users", NULL, EVENT_UPDATE, TS, true,
	    NOIMG, NOIMG },
	{ "big insert", HEAD("insert") ",\"big\":true}",
	    DECODE_OK, "public.users", NULL, EVENT_INSERT, TS, true,
	    NOIMG, NOIMG },
	{ "big false is not big", HEAD("insert") ",\"big\":false,\"n\":{\"id\":\"1\"}}",
	    DECODE_OK, "public.users", NULL, EVENT_INSERT, TS, false,
	    NOIMG, IMG({ "id", "1" }) },
	{ "quoted identifiers in t",
	    "{\"v\":1,\"t\":\"My Schema.\\\"Odd\\\" table\",\"op\":\"insert\","
	    "\"ts\":1,\"x\":2,\"n\":{\"Id\":\"1\"}}",
	    DECODE_OK, "My Schema.\"Odd\" table", NULL, EVENT_INSERT, 1, false,
	    NOIMG, IMG({ "Id", "1" }) },
	{ "no ts", "{\"v\":1,\"t\":\"a.b\",\"op\":\"insert\",\"n\":{\"id\":\"1\"}}",
	    DECODE_OK, "a.b", NULL, EVENT_INSERT, 0, false, NOIMG,
	    IMG({ "id", "1" }) },
	{ "keys in another order, with blanks",
	    " { \"n\" : { \"id\" : \"1\" } ,\n\t\"op\" : \"insert\" , \"ts\" : 5 ,"
	    " \"t\" : \"a.b\" , \"v\" : 1 } ",
	    DECODE_OK, "a.b", NULL, EVENT_INSERT, 5, false, NOIMG,
	    IMG({ "id", "1" }) },
	{ "unknown fields are ignored",
	    HEAD("insert") ",\"future\":[1,{\"a\":null}],\"n\":{\"id\":\"1\"}}",
	    DECODE_OK, "public.users", NULL, EVENT_INSERT, TS, false, NOIMG,
	    IMG({ "id", "1" }) },
	{ "empty image", HEAD("delete") ",\"o\":{}}",
	    DECODE_OK, "public.users", NULL, EVENT_DELETE, TS, false,
	    EMPTYIMG, NOIMG },
	{ "insert with an old image too",
	    HEAD("insert") ",\"o\":{\"id\":\"0\"},\"n\":{\"id\":\"1\"}}",
	    DECODE_OK, "public.users", NULL, EVENT_INSERT, TS, false,
	    IMG({ "id", "0" }), IMG({ "id", "1" }) },

	/* Values. */
	{ "null values",
	    HEAD("update") ",\"o\":{\"id\":\"1\",\"email\":null},"
	    "\"n\":{\"id\":\"1\",\"email\":\"b@x.io\"}}",
	    DECODE_OK, "public.users", NULL, EVENT_UPDATE, TS, false,
	    IMG({ "id", "1" }, { "email", NULL }),
	    IMG({ "id", "1" }, { "email", "b@x.io" }) },
	{ "empty string is not null", HEAD("insert") ",\"n\":{\"id\":\"\"}}",
	    DECODE_OK, "public.users", NULL, EVENT_INSERT, TS, false, NOIMG,
	    IMG({ "id", "" }) },
	{ "unicode",
	    HEAD("insert") ",\"n\":{\"name\":\"h\xc3\xa9llo \xe2\x98\x83\","
	    "\"esc\":\"\\u00e9\\u2603\\ud83d\\ude00\"}}",
	    DECODE_OK, "public.users", NULL, EVENT_INSERT, TS, false, NOIMG,
	    IMG({ "name", "h\xc3\xa9llo \xe2\x98\x83" },
		{ "esc", "\xc3\xa9\xe2\x98\x83\xf0\x9f\x98\x80" }) },
	{ "quotes, backslashes, newlines",
	    HEAD("insert") ",\"n\":{\"v\":\"a\\\"b\\\\c\\nd\\te\\/f\\r\\b\\f\","
	    "\"k\\\"ey\":\"{x}:y z\"}}",
	    DECODE_OK, "public.users", NULL, EVENT_INSERT, TS, false, NOIMG,
	    IMG({ "v", "a\"b\\c\nd\te/f\r\b\f" }, { "k\"ey", "{x}:y z" }) },
	{ "numbers as values",
	    HEAD("insert") ",\"n\":{\"i\":42,\"neg\":-7,\"zero\":0,\"f\":1.5,"
	    "\"tenth\":0.1,\"exp\":1e3,\"big\":12345678901234567890,"
	    "\"max\":9007199254740991}}",
	    DECODE_OK, "public.users", NULL, EVENT_INSERT, TS, false, NOIMG,
	    IMG({ "i", "42" }, { "neg", "-7" }, { "zero", "0" }, { "f", "1.5" },
		{ "tenth", "0.1" }, { "exp", "1000" },
		{ "big", "1.2345678901234567e+19" },
		{ "max", "9007199254740991" }) },
	{ "bools as values",
	    HEAD("insert") ",\"n\":{\"yes\":true,\"no\":false}}",
	    DECODE_OK, "public.users", NULL, EVENT_INSERT, TS, false, NOIMG,
	    IMG({ "yes", "true" }, { "no", "false" }) },
	{ "escaped backslash before u0000 is text",
	    HEAD("insert") ",\"n\":{\"id\":\"\\\\u0000\"}}",
	    DECODE_OK, "public.users", NULL, EVENT_INSERT, TS, false, NOIMG,
	    IMG({ "id", "\\u0000" }) },
	{ "two escaped backslashes before u0000",
	    HEAD("insert") ",\"n\":{\"id\":\"\\\\\\\\u0000\"}}",
	    DECODE_OK, "public.users", NULL, EVENT_INSERT, TS, false, NOIMG,
	    IMG({ "id", "\\\\u0000" }) },
	{ "u0001 is fine", HEAD("insert") ",\"n\":{\"id\":\"a\\u0001b\"}}",
	    DECODE_OK, "public.users", NULL, EVENT_INSERT, TS, false, NOIMG,
	    IMG({ "id", "a\001b" }) },
	{ "UTF-8 lengths at their limits",
	    HEAD("insert") ",\"n\":{\"a\":\"\\u007f\\u0080\\u07ff\\u0800\","
	    "\"b\":\"\\uFFFF\\uD800\\uDC00\\udbff\\udfff\\u00C9\"}}",
	    DECODE_OK, "public.users", NULL, EVENT_INSERT, TS, false, NOIMG,
	    IMG({ "a", "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80" },
		{ "b", "\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\xc3\x89" }) },
	{ "escapes in names and in t",
	    "{\"v\":1,\"\\u0074\":\"a\\u002eb\",\"op\":\"insert\","
	    "\"\\u006e\":{\"\\u00e9\\n\":\"1\"}}",
	    DECODE_OK, "a.b", NULL, EVENT_INSERT, 0, false, NOIMG,
	    IMG({ "\xc3\xa9\n", "1" }) },
	{ "raw control characters in strings",
	    HEAD("insert") ",\"n\":{\"id\":\"a\tb\x01\x1f\"}}",
	    DECODE_OK, "public.users", NULL, EVENT_INSERT, TS, false, NOIMG,
	    IMG({ "id", "a\tb\x01\x1f" }) },
	{ "control characters are blanks",
	    "\x01{\x0b\"v\"\x1f:1,\"t\":\"a.b\",\"op\":\"insert\","
	    "\"n\":{\"id\":\"1\"}}",
	    DECODE_OK, "a.b", NULL, EVENT_INSERT, 0, false, NOIMG,
	    IMG({ "id", "1" }) },
	{ "byte order mark",
	    "\xef\xbb\xbf{\"v\":1,\"t\":\"a.b\",\"op\":\"insert\",\"n\":{}}",
	    DECODE_OK, "a.b", NULL, EVENT_INSERT, 0, false, NOIMG, EMPTYIMG },

	/* Of several members of one name, the first counts. */
	{ "repeated fields",
	    "{\"v\":1,\"v\":2,\"t\":\"a.b\",\"t\":\"c.d\",\"op\":\"delete\","
	    "\"op\":\"insert\",\"ts\":3,\"ts\":-1,\"big\":false,\"big\":true,"
	    "\"o\":{\"id\":\"1\"},\"o\":{\"id\":[]},\"n\":{\"id\":\"2\"},"
	    "\"n\":5}",
	    DECODE_OK, "a.b", NULL, EVENT_DELETE, 3, false,
	    IMG({ "id", "1" }), IMG({ "id", "2" }) },
	{ "fields after the images",
	    "{\"n\":{\"id\":\"1\"},\"o\":{\"id\":\"0\"},\"ts\":7,"
	    "\"op\":\"update\",\"t\":\"a.b\",\"v\":1}",
	    DECODE_OK, "a.b", NULL, EVENT_UPDATE, 7, false,
	    IMG({ "id", "0" }), IMG({ "id", "1" }) },
	{ "deep values elsewhere are skipped",
	    HEAD("insert") ",\"x2\":[[[[{\"o\":{\"id\":[]}}]]]],"
	    "\"n\":{\"id\":\"1\"},\"rows2\":{\"rows\":[1]}}",
	    DECODE_OK, "public.users", NULL, EVENT_INSERT, TS, false, NOIMG,
	    IMG({ "id", "1" }) },

	/* Numbers are read as strtod() reads them, as they always were. */
	{ "numbers in other forms",
	    HEAD("insert") ",\"n\":{\"a\":007,\"b\":-0,\"c\":1.,\"d\":-.5,"
	    "\"e\":1E+2,\"f\":123456789012345678,\"g\":0.30000000000000004,"
	    "\"h\":1234567890123456789012345678901234567890123456789012345678901"
	    "234567890,\"i\":4.9e-324}}",
	    DECODE_OK, "public.users", NULL, EVENT_INSERT, TS, false, NOIMG,
	    IMG({ "a", "7" }, { "b", "-0" }, { "c", "1" }, { "d", "-0.5" },
		{ "e", "100" }, { "f", "1.2345678901234568e+17" },
		{ "g", "0.30000000000000004" },
		{ "h", "1.2345678901234567e+69" },
		{ "i", "4.94065645841247e-324" }) },
	{ "ts with a fraction", "{\"v\":1.0,\"t\":\"a.b\",\"op\":\"truncate\","
	    "\"ts\":1.9e1}", DECODE_OK, "a.b", NULL, EVENT_TRUNCATE, 19, false,
	    NOIMG, NOIMG },

	/* Names a table, but cannot be used row by row. */
	BAD("insert without n", HEAD("insert") "}",
	    DECODE_TABLE_ONLY, "public.users", "insert without new row"),
	BAD("update without o", HEAD("update") ",\"n\":{\"id\":\"1\"}}",
	    DECODE_TABLE_ONLY, "public.users", "update without old row"),
	BAD("update without n", HEAD("update") ",\"o\":{\"id\":\"1\"}}",
	    DECODE_TABLE_ONLY, "public.users", "update without new row"),
	BAD("delete without o", HEAD("delete") ",\"n\":{\"id\":\"1\"}}",
	    DECODE_TABLE_ONLY, "public.users", "delete without old row"),
	BAD("v is 2", "{\"v\":2,\"t\":\"public.users\",\"op\":\"insert\",\"n\":{}}",
	    DECODE_TABLE_ONLY, "public.users", "version"),
	BAD("v is a string", "{\"v\":\"1\",\"t\":\"public.users\",\"op\":\"insert\","
	    "\"n\":{}}", DECODE_TABLE_ONLY, "public.users", "version"),
	BAD("v is 1.5", "{\"v\":1.5,\"t\":\"public.users\",\"op\":\"insert\","
	    "\"n\":{}}", DECODE_TABLE_ONLY, "public.users", "version"),
	BAD("no v", "{\"t\":\"public.users\",\"op\":\"insert\",\"n\":{}}",
	    DECODE_TABLE_ONLY, "public.users", "version"),
	BAD("unknown op", "{\"v\":1,\"t\":\"public.users\",\"op\":\"upsert\","
	    "\"n\":{}}", DECODE_TABLE_ONLY, "public.users", "unknown operation"),
	BAD("op in capitals", "{\"v\":1,\"t\":\"public.users\",\"op\":\"INSERT\","
	    "\"n\":{}}", DECODE_TABLE_ONLY, "public.users", "unknown operation"),
	BAD("op is a number", "{\"v\":1,\"t\":\"public.users\",\"op\":0,\"n\":{}}",
	    DECODE_TABLE_ONLY, "public.users", "unknown operation"),
	BAD("no op", "{\"v\":1,\"t\":\"public.users\",\"n\":{}}",
	    DECODE_TABLE_ONLY, "public.users", "unknown operation"),
	BAD("empty op", "{\"v\":1,\"t\":\"public.users\",\"op\":\"\",\"n\":{}}",
	    DECODE_TABLE_ONLY, "public.users", "unknown operation"),
	BAD("negative ts", "{\"v\":1,\"t\":\"a.b\",\"op\":\"truncate\",\"ts\":-1}",
	    DECODE_TABLE_ONLY, "a.b", "\"ts\""),
	BAD("ts is a string", "{\"v\":1,\"t\":\"a.b\",\"op\":\"truncate\","
	    "\"ts\":\"1\"}", DECODE_TABLE_ONLY, "a.b", "\"ts\""),
	BAD("ts too large", "{\"v\":1,\"t\":\"a.b\",\"op\":\"truncate\","
	    "\"ts\":1e30}", DECODE_TABLE_ONLY, "a.b", "\"ts\""),
	BAD("nested object value",
	    HEAD("insert") ",\"n\":{\"id\":\"1\",\"meta\":{\"a\":\"b\"}}}",
	    DECODE_TABLE_ONLY, "public.users", "column \"meta\" is not a scalar"),
	BAD("array value", HEAD("insert") ",\"n\":{\"id\":[\"1\"]}}",
	    DECODE_TABLE_ONLY, "public.users", "column \"id\" is not a scalar"),
	BAD("bad value in o", HEAD("update") ",\"o\":{\"id\":{}},\"n\":{\"id\":\"1\"}}",
	    DECODE_TABLE_ONLY, "public.users", "not a scalar"),
	BAD("n is a string", HEAD("insert") ",\"n\":\"id=1\"}",
	    DECODE_TABLE_ONLY, "public.users", "not a JSON object"),
	BAD("n is an array", HEAD("insert") ",\"n\":[\"1\"]}",
	    DECODE_TABLE_ONLY, "public.users", "not a JSON object"),
	BAD("o is null", HEAD("delete") ",\"o\":null}",
	    DECODE_TABLE_ONLY, "public.users", "not a JSON object"),
	BAD("u0000 in a value", HEAD("insert") ",\"n\":{\"id\":\"a\\u0000b\"}}",
	    DECODE_TABLE_ONLY, "public.users", "NUL"),
	BAD("u0000 alone", HEAD("insert") ",\"n\":{\"id\":\"\\u0000\"}}",
	    DECODE_TABLE_ONLY, "public.users", "NUL"),
	BAD("u0000 in a column name", HEAD("insert") ",\"n\":{\"i\\u0000d\":\"1\"}}",
	    DECODE_TABLE_ONLY, "public.users", "NUL"),
	BAD("backslash then u0000",
	    HEAD("insert") ",\"n\":{\"id\":\"\\\\\\u0000\"}}",
	    DECODE_TABLE_ONLY, "public.users", "NUL"),
	BAD("u0000 in a field that is not read",
	    HEAD("insert") ",\"y\":[\"\\u0000\"],\"n\":{\"id\":\"1\"}}",
	    DECODE_TABLE_ONLY, "public.users", "NUL"),
	BAD("u0000 comes after the version check",
	    "{\"v\":3,\"t\":\"a.b\",\"op\":\"insert\",\"n\":{\"id\":\"\\u0000\"}}",
	    DECODE_TABLE_ONLY, "a.b", "version"),
	BAD("first v counts", "{\"v\":2,\"v\":1,\"t\":\"a.b\",\"op\":\"insert\","
	    "\"n\":{}}", DECODE_TABLE_ONLY, "a.b", "version"),
	BAD("errors of the first image come first",
	    HEAD("update") ",\"n\":{\"id\":[]},\"o\":{\"id\":{}}}",
	    DECODE_TABLE_ONLY, "public.users", "not a scalar"),
	BAD("missing image before a bad one, op last",
	    "{\"v\":1,\"t\":\"a.b\",\"n\":{\"id\":[]},\"op\":\"update\"}",
	    DECODE_TABLE_ONLY, "a.b", "update without old row"),

	/* Not a pginval payload. */
	BAD("empty string", "", DECODE_JUNK, NULL, "not JSON"),
	BAD("text after the object", HEAD("insert") ",\"n\":{\"id\":\"1\"}} x",
	    DECODE_JUNK, NULL, "text after the JSON object"),
	BAD("two objects", "{\"t\":\"a.b\"}{\"t\":\"a.b\"}", DECODE_JUNK, NULL,
	    "text after the JSON object"),
	BAD("blanks", " \n\t", DECODE_JUNK, NULL, "not JSON"),
	BAD("not JSON", "hello, world", DECODE_JUNK, NULL, "not JSON"),
	BAD("almost JSON", "{v:1,t:'a.b'}", DECODE_JUNK, NULL, "not JSON"),
	BAD("truncated JSON", "{\"v\":1,\"t\":\"public.users\",\"op\":\"ins",
	    DECODE_JUNK, NULL, "not JSON"),
	BAD("truncated after an image",
	    HEAD("insert") ",\"n\":{\"id\":\"1\"}", DECODE_JUNK, NULL, "not JSON"),
	BAD("unterminated string", "{\"t\":\"public.users", DECODE_JUNK, NULL,
	    "not JSON"),
	BAD("trailing comma", "{\"v\":1,\"t\":\"a.b\",\"op\":\"truncate\",}",
	    DECODE_JUNK, NULL, "not JSON"),
	BAD("root is an array", "[\"public.users\"]", DECODE_JUNK, NULL, "\"t\""),
	BAD("root is a string", "\"public.users\"", DECODE_JUNK, NULL, "\"t\""),
	BAD("root is a number", "42", DECODE_JUNK, NULL, "\"t\""),
	BAD("root is null", "null", DECODE_JUNK, NULL, "\"t\""),
	BAD("root is true", "true", DECODE_JUNK, NULL, "\"t\""),
	BAD("no t", "{\"v\":1,\"op\":\"truncate\"}", DECODE_JUNK, NULL, "\"t\""),
	BAD("empty t", "{\"v\":1,\"t\":\"\",\"op\":\"truncate\"}", DECODE_JUNK,
	    NULL, "\"t\""),
	BAD("t is a number", "{\"v\":1,\"t\":12,\"op\":\"truncate\"}", DECODE_JUNK,
	    NULL, "\"t\""),
	BAD("t is null", "{\"v\":1,\"t\":null,\"op\":\"truncate\"}", DECODE_JUNK,
	    NULL, "\"t\""),
	BAD("t is an object", "{\"v\":1,\"t\":{\"s\":\"a\"},\"op\":\"truncate\"}",
	    DECODE_JUNK, NULL, "\"t\""),
	BAD("T in capitals", "{\"v\":1,\"T\":\"a.b\",\"op\":\"truncate\"}",
	    DECODE_JUNK, NULL, "\"t\""),
	BAD("first t counts", "{\"t\":1,\"t\":\"a.b\",\"v\":1,\"op\":\"truncate\"}",
	    DECODE_JUNK, NULL, "\"t\""),
	BAD("t of 0 characters before a NUL",
	    "{\"v\":1,\"t\":\"\\u0000a.b\",\"op\":\"truncate\"}", DECODE_JUNK,
	    NULL, "\"t\""),
	BAD("lone low surrogate", HEAD("insert") ",\"n\":{\"id\":\"\\udc00\"}}",
	    DECODE_JUNK, NULL, "not JSON"),
	BAD("high surrogate alone", HEAD("insert") ",\"n\":{\"id\":\"\\ud800\"}}",
	    DECODE_JUNK, NULL, "not JSON"),
	BAD("high surrogate and a letter",
	    HEAD("insert") ",\"n\":{\"id\":\"\\ud800\\u0041\"}}",
	    DECODE_JUNK, NULL, "not JSON"),
	BAD("short u escape", HEAD("insert") ",\"n\":{\"id\":\"\\u12\"}}",
	    DECODE_JUNK, NULL, "not JSON"),
	/* cJSON read this as a NUL, which cut the value short, unnoticed. */
	BAD("bad hex digit", HEAD("insert") ",\"n\":{\"id\":\"4\\u00g12\"}}",
	    DECODE_JUNK, NULL, "not JSON"),
	BAD("unknown escape", HEAD("insert") ",\"n\":{\"id\":\"\\x41\"}}",
	    DECODE_JUNK, NULL, "not JSON"),
	BAD("backslash at the end", "{\"t\":\"a.b\\", DECODE_JUNK, NULL,
	    "not JSON"),
	BAD("number stops short", HEAD("insert") ",\"n\":{\"id\":1-2}}",
	    DECODE_JUNK, NULL, "not JSON"),
	BAD("number with two exponents", HEAD("insert") ",\"n\":{\"id\":1e5e5}}",
	    DECODE_JUNK, NULL, "not JSON"),
	BAD("minus alone", HEAD("insert") ",\"n\":{\"id\":-}}", DECODE_JUNK,
	    NULL, "not JSON"),
	BAD("plus sign", HEAD("insert") ",\"n\":{\"id\":+1}}", DECODE_JUNK,
	    NULL, "not JSON"),
	BAD("hex number", HEAD("insert") ",\"n\":{\"id\":0x1}}", DECODE_JUNK,
	    NULL, "not JSON"),
	BAD("word cut short", HEAD("insert") ",\"n\":{\"id\":nul}}", DECODE_JUNK,
	    NULL, "not JSON"),
	BAD("missing colon", "{\"t\" \"a.b\"}", DECODE_JUNK, NULL, "not JSON"),
	BAD("missing comma", "{\"t\":\"a.b\" \"v\":1}", DECODE_JUNK, NULL,
	    "not JSON"),
	BAD("leading comma", "{,\"t\":\"a.b\"}", DECODE_JUNK, NULL, "not JSON"),
	BAD("name is not a string", "{t:\"a.b\"}", DECODE_JUNK, NULL, "not JSON"),
	BAD("trailing comma in an array", "{\"t\":\"a.b\",\"x\":[1,]}",
	    DECODE_JUNK, NULL, "not JSON"),
	BAD("unclosed array", "{\"t\":\"a.b\",\"x\":[1}", DECODE_JUNK, NULL,
	    "not JSON"),
	BAD("vertical tab after the object", "{\"t\":\"a.b\"}\x0b", DECODE_JUNK,
	    NULL, "text after the JSON object"),
	BAD("byte order mark alone before a digit", "\xef\xbb\xbf" "1",
	    DECODE_JUNK, NULL, "not JSON"),
	BAD("deeply nested junk",
	    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
	    "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
	    DECODE_JUNK, NULL, "\"t\""),
};

static void
check_image(int line, const char *which, const struct row_image *got,
    const struct image *want)
{
	if (got->present != want->present) {
		t_fail(line, "%s image %s", which, got->present ? "present" :
		    "missing");
		return;
	}
	if (!want->present) {
		if (got->n != 0 || got->cols != NULL)
			t_fail(line, "%s image absent but has columns", which);
		return;
	}
	if (got->n != want->n) {
		t_fail(line, "%s image has %zu columns, want %zu", which, got->n,
		    want->n);
		return;
	}
	for (size_t i = 0; i < want->n; i++) {
		const struct row_col *c = &got->cols[i];
		const struct col *w = &want->cols[i];

		CHECK_STR(c->name, w->name);
		t_check_mem(line, w->name, c->val, c->val ? c->len : 0, w->val,
		    w->val ? strlen(w->val) : 0);
		if (c->val != NULL && c->val[c->len] != '\0')
			t_fail(line, "%s: value not NUL-terminated", w->name);
		/* The column is found by name, too. */
		if (row_image_get(got, w->name) != c)
			t_fail(line, "row_image_get(\"%s\") is not column %zu",
			    w->name, i);
	}
}

static void
run_decode_case(const struct decode_case *c, const char *payload, size_t len)
{
	struct event ev;
	char err[256];
	enum decode_result r;

	memset(&ev, 0xa5, sizeof(ev));	/* decode_event must set everything */
	memset(err, 'x', sizeof(err));
	r = decode_event(payload, len, &ev, err, sizeof(err));
	if (r != c->want) {
		t_fail(__LINE__, "result %s, want %s (err \"%.*s\")",
		    r <= DECODE_JUNK ? result_names[r] : "?",
		    result_names[c->want], (int)sizeof(err) - 1, err);
		if (r != DECODE_JUNK)
			decode_event_free(&ev);
		return;
	}
	if (memchr(err, '\0', sizeof(err)) == NULL) {
		t_fail(__LINE__, "err is not NUL-terminated");
		err[sizeof(err) - 1] = '\0';
	}
	switch (r) {
	case DECODE_OK:
		CHECK_STR(err, "");
		CHECK_STR(ev.table, c->table);
		CHECK_INT(ev.op, c->op);
		CHECK_INT(ev.ts, c->ts);
		CHECK(ev.big == c->big);
		check_image(__LINE__, "old", &ev.old, &c->old);
		check_image(__LINE__, "new", &ev.new, &c->new);
		CHECK(ev.json != NULL);
		break;
	case DECODE_TABLE_ONLY:
		CHECK_STR(ev.table, c->table);
		if (strstr(err, c->err) == NULL)
			t_fail(__LINE__, "err \"%s\" lacks \"%s\"", err, c->err);
		break;
	case DECODE_JUNK:
		if (strstr(err, c->err) == NULL)
			t_fail(__LINE__, "err \"%s\" lacks \"%s\"", err, c->err);
		/* Nothing was kept. */
		CHECK(ev.json == NULL);
		CHECK(ev.table == NULL);
		CHECK(ev.old.cols == NULL && ev.new.cols == NULL);
		return;
	}
	decode_event_free(&ev);
	/* Freeing clears the event. */
	CHECK(ev.json == NULL && ev.table == NULL);
	CHECK(ev.old.cols == NULL && ev.new.cols == NULL);
	CHECK(!ev.old.present && !ev.new.present);
}

static void
test_decode_table(void **state)
{
	for (size_t i = 0; i < sizeof(decode_cases) / sizeof(decode_cases[0]); i++) {
		const struct decode_case *c = &decode_cases[i];
		size_t len = strlen(c->payload);
		char *copy;

		tcase = c->name;
		run_decode_case(c, c->payload, len);
		/* An exact-size heap copy without a NUL: decode_event must
		 * respect len (ASan and valgrind see any overread). */
		copy = malloc(len ? len : 1);
		assert_non_null(copy);
		memcpy(copy, c->payload, len);
		run_decode_case(c, copy, len);
		free(copy);
	}
	t_done();
}

/* A payload cut short by len is not read past len. */
struct prefix_case {
	const char *name;
	const char *payload;
	size_t len;
	enum decode_result want;
};

static const struct prefix_case prefix_cases[] = {
	{ "whole", HEAD("truncate") "}", sizeof(HEAD("truncate")), DECODE_OK },
	{ "last brace cut off", HEAD("truncate") "}",
	    sizeof(HEAD("truncate")) - 1, DECODE_JUNK },
	{ "cut inside t", HEAD("truncate") "}", 15, DECODE_JUNK },
	{ "zero length", HEAD("truncate") "}", 0, DECODE_JUNK },
	{ "one byte", "{}", 1, DECODE_JUNK },
};

static void
test_decode_len(void **state)
{
	for (size_t i = 0; i < sizeof(prefix_cases) / sizeof(prefix_cases[0]); i++) {
		const struct prefix_case *c = &prefix_cases[i];
		char *copy = malloc(c->len ? c->len : 1);
		struct event ev;
		char err[128];
		enum decode_result r;

		tcase = c->name;
		assert_non_null(copy);
		memcpy(copy, c->payload, c->len);
		r = decode_event(copy, c->len, &ev, err, sizeof(err));
		CHECK_INT(r, c->want);
		if (r != DECODE_JUNK)
			decode_event_free(&ev);
		free(copy);
	}
	t_done();
}

/* ------------------------------------------------------------------ */
/* Big and deep payloads, built at run time. */

static char *
repeat(const char *head, const char *unit, size_t n, const char *mid,
    const char *unit2, size_t n2, const char *tail)
{
	struct buf b = { 0 };

	buf_adds(&b, head);
	for (size_t i = 0; i < n; i++)
		buf_adds(&b, unit);
	buf_adds(&b, mid);
	for (size_t i = 0; i < n2; i++)
		buf_adds(&b, unit2);
	buf_adds(&b, tail);
	return buf_steal(&b);
}

struct gen_case {
	const char *name;
	const char *head, *unit;
	size_t n;
	const char *mid, *unit2;
	size_t n2;
	const char *tail;
	enum decode_result want;
	size_t ncols;		/* of "n", on DECODE_OK */
	const char *col;	/* a column to look at, on DECODE_OK */
	size_t vlen;		/* its length */
	const char *err;	/* a substring of err, if set */
};

static const struct gen_case gen_cases[] = {
	{ "100 KB value", HEAD("insert") ",\"n\":{\"id\":\"1\",\"blob\":\"", "x",
	    100 * 1024, "", "", 0, "\"}}", DECODE_OK, 2, "blob", 100 * 1024,
	    NULL },
	{ "100 KB of escapes", HEAD("insert") ",\"n\":{\"blob\":\"", "\\n",
	    50 * 1024, "", "", 0, "\"}}", DECODE_OK, 1, "blob", 50 * 1024, NULL },
	{ "100 KB of UTF-8", HEAD("insert") ",\"n\":{\"blob\":\"",
	    "\xe2\x98\x83", 34 * 1024, "", "", 0, "\"}}", DECODE_OK, 1, "blob",
	    3 * 34 * 1024, NULL },
	{ "10 KB value with a late u0000", HEAD("insert") ",\"n\":{\"blob\":\"",
	    "y", 10 * 1024, "\\u0000", "", 0, "\"}}", DECODE_TABLE_ONLY, 0, NULL,
	    0, NULL },
	{ "deep arrays", "", "[", 100000, "", "]", 100000, "", DECODE_JUNK, 0,
	    NULL, 0, NULL },
	{ "deep objects", "", "{\"a\":", 100000, "1", "}", 100000, "",
	    DECODE_JUNK, 0, NULL, 0, NULL },
	{ "unbalanced deep junk", "", "[{\"t\":", 50000, "", "", 0, "",
	    DECODE_JUNK, 0, NULL, 0, NULL },
	{ "deep value in a row image", HEAD("insert") ",\"n\":{\"id\":", "[",
	    200, "1", "]", 200, "}}", DECODE_TABLE_ONLY, 0, NULL, 0, NULL },
	{ "too deep for the parser in a row image",
	    HEAD("insert") ",\"n\":{\"id\":", "[", 5000, "1", "]", 5000, "}}",
	    DECODE_JUNK, 0, NULL, 0, NULL },
	{ "table name of 512 bytes", "{\"v\":1,\"t\":\"s.", "t", 510, "", "", 0,
	    "\",\"op\":\"truncate\"}", DECODE_OK, 0, NULL, 0, NULL },
	{ "table name of 513 bytes", "{\"v\":1,\"t\":\"s.", "t", 511, "", "", 0,
	    "\",\"op\":\"truncate\"}", DECODE_JUNK, 0, NULL, 0, NULL },
	{ "table name of 100 KB", "{\"v\":1,\"t\":\"s.", "t", 100 * 1024, "",
	    "", 0, "\",\"op\":\"truncate\"}", DECODE_JUNK, 0, NULL, 0, NULL },
	/* Up to 1000 arrays and objects may be open at once, the root
	 * included: cJSON's limit. */
	{ "1000 nested arrays", "", "[", 1000, "", "]", 1000, "", DECODE_JUNK,
	    0, NULL, 0, "\"t\"" },
	{ "1001 nested arrays", "", "[", 1001, "", "]", 1001, "", DECODE_JUNK,
	    0, NULL, 0, "not JSON" },
	{ "998 arrays in a row image", HEAD("insert") ",\"n\":{\"id\":", "[",
	    998, "1", "]", 998, "}}", DECODE_TABLE_ONLY, 0, NULL, 0, "scalar" },
	{ "999 arrays in a row image", HEAD("insert") ",\"n\":{\"id\":", "[",
	    999, "1", "]", 999, "}}", DECODE_JUNK, 0, NULL, 0, "not JSON" },
	{ "999 objects in a field not read",
	    HEAD("insert") ",\"n\":{\"id\":\"1\"},\"y\":", "{\"a\":", 999, "null",
	    "}", 999, "}", DECODE_OK, 1, "id", 1, NULL },
	{ "1000 objects in a field not read",
	    HEAD("insert") ",\"n\":{\"id\":\"1\"},\"y\":", "{\"a\":", 1000,
	    "null", "}", 1000, "}", DECODE_JUNK, 0, NULL, 0, "not JSON" },
	{ "996 arrays in a row of rows",
	    HEAD("insert") ",\"rows\":[{\"n\":{\"id\":", "[", 996, "", "]", 996,
	    "}}]}", DECODE_TABLE_ONLY, 0, NULL, 0, "scalar" },
	{ "997 arrays in a row of rows",
	    HEAD("insert") ",\"rows\":[{\"n\":{\"id\":", "[", 997, "", "]", 997,
	    "}}]}", DECODE_JUNK, 0, NULL, 0, "not JSON" },
	{ "long number", HEAD("insert") ",\"n\":{\"id\":0.", "7", 5000, "", "",
	    0, "}}", DECODE_OK, 1, "id", 18, NULL },
	{ "10 KB of escaped characters", HEAD("insert") ",\"n\":{\"blob\":\"",
	    "\\ud83d\\ude00", 1024, "", "", 0, "\"}}", DECODE_OK, 1, "blob",
	    4 * 1024, NULL },
};

static void
test_decode_generated(void **state)
{
	for (size_t i = 0; i < sizeof(gen_cases) / sizeof(gen_cases[0]); i++) {
		const struct gen_case *c = &gen_cases[i];
		char *p = repeat(c->head, c->unit, c->n, c->mid, c->unit2, c->n2,
		    c->tail);
		struct event ev;
		char err[128];
		enum decode_result r;

		tcase = c->name;
		r = decode_event(p, strlen(p), &ev, err, sizeof(err));
		CHECK_INT(r, c->want);
		if (c->err != NULL && strstr(err, c->err) == NULL)
			t_fail(__LINE__, "err \"%s\" lacks \"%s\"", err, c->err);
		if (r == DECODE_OK && c->ncols > 0) {
			const struct row_col *col = row_image_get(&ev.new, c->col);

			CHECK_INT(ev.new.n, c->ncols);
			CHECK(col != NULL);
			if (col != NULL) {
				CHECK_INT(col->len, c->vlen);
				CHECK(col->val != NULL &&
				    strlen(col->val) == c->vlen);
			}
		}
		if (r != DECODE_JUNK)
			decode_event_free(&ev);
		free(p);
	}
	t_done();
}

/* A row image with thousands of columns. */
static void
test_decode_many_columns(void **state)
{
	struct buf b = { 0 };
	struct event ev;
	char err[128], name[32];
	enum decode_result r;

	buf_adds(&b, HEAD("insert") ",\"n\":{");
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "%s\"c%d\":\"%d\"", i ? "," : "", i,
		    i * 3);
		buf_adds(&b, name);
	}
	buf_adds(&b, "}}");
	assert_true(b.len > 60000);
	r = decode_event(b.data, b.len, &ev, err, sizeof(err));
	assert_int_equal(r, DECODE_OK);
	assert_int_equal(ev.new.n, 5000);
	for (int i = 0; i < 5000; i += 499) {
		char want[16];
		const struct row_col *c;

		snprintf(name, sizeof(name), "c%d", i);
		snprintf(want, sizeof(want), "%d", i * 3);
		c = row_image_get(&ev.new, name);
		assert_non_null(c);
		assert_string_equal(c->val, want);
	}
	assert_null(row_image_get(&ev.new, "c5000"));
	decode_event_free(&ev);
	buf_free(&b);
}

/* A statement's 500 rows of 3 columns, the most the triggers pack. */
static void
test_decode_many_rows(void **state)
{
	struct buf b = { 0 };
	struct event ev;
	char err[128], row[128];
	enum decode_result r;

	buf_adds(&b, HEAD("update") ",\"rows\":[");
	for (int i = 0; i < 500; i++) {
		snprintf(row, sizeof(row), "%s{\"o\":{\"id\":\"%d\",\"k\":%d,"
		    "\"e\":null},\"n\":{\"id\":\"%d\",\"k\":%d,\"e\":\"x\"}}",
		    i ? "," : "", i, i, i, -i);
		buf_adds(&b, row);
	}
	buf_adds(&b, "]}");
	r = decode_event(b.data, b.len, &ev, err, sizeof(err));
	assert_int_equal(r, DECODE_OK);
	assert_int_equal(ev.nrows, 500);
	for (int i = 0; i < 500; i += 71) {
		const struct event_row *er = &ev.rows[i];

		snprintf(row, sizeof(row), "%d", i);
		assert_int_equal(er->old.n, 3);
		assert_int_equal(er->new.n, 3);
		assert_string_equal(row_image_get(&er->old, "id")->val, row);
		assert_string_equal(row_image_get(&er->old, "k")->val, row);
		assert_null(row_image_get(&er->old, "e")->val);
		snprintf(row, sizeof(row), "%d", -i);
		assert_string_equal(row_image_get(&er->new, "k")->val, row);
		assert_string_equal(row_image_get(&er->new, "e")->val, "x");
	}
	decode_event_free(&ev);
	buf_free(&b);
}

/* A column repeated in an image is kept each time; by name, the first is
 * found. */
static void
test_decode_repeated_columns(void **state)
{
	static const char payload[] = HEAD("insert") ",\"n\":{\"id\":\"1\","
	    "\"x\":true,\"id\":\"2\",\"id\":null}}";
	struct event ev;
	char err[128];

	assert_int_equal(decode_event(payload, strlen(payload), &ev, err,
	    sizeof(err)), DECODE_OK);
	assert_int_equal(ev.new.n, 4);
	assert_string_equal(ev.new.cols[2].val, "2");
	assert_null(ev.new.cols[3].val);
	assert_ptr_equal(row_image_get(&ev.new, "id"), &ev.new.cols[0]);
	assert_string_equal(row_image_get(&ev.new, "x")->val, "true");
	decode_event_free(&ev);
}

/* NUL bytes in the payload itself (never in a NOTIFY, but a length says
 * where a payload ends): blanks between tokens, like every control
 * character, and in a string the same as an escaped NUL. */
struct nul_case {
	const char *name;
	const char *payload;
	size_t len;
	enum decode_result want;
	const char *err;	/* a substring of err, unless DECODE_OK */
};

#define NUL_CASE(n, p, w, e) { (n), (p), sizeof(p) - 1, (w), (e) }

static const struct nul_case nul_cases[] = {
	NUL_CASE("between tokens", "{\"v\":1,\0\"t\":\"a.b\",\"op\":\"insert\","
	    "\"n\":\0{}}", DECODE_OK, NULL),
	NUL_CASE("in a value", "{\"v\":1,\"t\":\"a.b\",\"op\":\"insert\","
	    "\"n\":{\"id\":\"4\0002\"}}", DECODE_TABLE_ONLY, "NUL"),
	NUL_CASE("in a name", "{\"v\":1,\"t\":\"a.b\",\"op\":\"insert\","
	    "\"n\":{\"i\0d\":\"42\"}}", DECODE_TABLE_ONLY, "NUL"),
	NUL_CASE("in a field not read", "{\"v\":1,\"t\":\"a.b\",\"y\":\"\0\","
	    "\"op\":\"insert\",\"n\":{\"id\":\"1\"}}", DECODE_TABLE_ONLY,
	    "NUL"),
	NUL_CASE("after the object", "{\"v\":1,\"t\":\"a.b\",\"op\":\"insert\","
	    "\"n\":{}}\0", DECODE_JUNK, "text after"),
	NUL_CASE("in t, truncate", "{\"v\":1,\"t\":\"a.b\0c\","
	    "\"op\":\"truncate\"}", DECODE_OK, NULL),
};

static void
test_decode_nul_bytes(void **state)
{
	for (size_t i = 0; i < sizeof(nul_cases) / sizeof(nul_cases[0]); i++) {
		const struct nul_case *c = &nul_cases[i];
		char *copy = malloc(c->len);
		struct event ev;
		char err[128];
		enum decode_result r;

		tcase = c->name;
		assert_non_null(copy);
		memcpy(copy, c->payload, c->len);
		r = decode_event(copy, c->len, &ev, err, sizeof(err));
		CHECK_INT(r, c->want);
		if (c->err != NULL && strstr(err, c->err) == NULL)
			t_fail(__LINE__, "err \"%s\" lacks \"%s\"", err, c->err);
		/* A table name ends at its NUL, as in C. */
		if (r != DECODE_JUNK) {
			CHECK_STR(ev.table, "a.b");
			decode_event_free(&ev);
		}
		free(copy);
	}
	t_done();
}

/* ------------------------------------------------------------------ */

/* err is always NUL-terminated, even when too small for the reason. */
struct errlen_case {
	const char *name;
	const char *payload;
	size_t errlen;
	enum decode_result want;
};

static const struct errlen_case errlen_cases[] = {
	{ "junk, 1 byte", "nope", 1, DECODE_JUNK },
	{ "junk, 4 bytes", "nope", 4, DECODE_JUNK },
	{ "table only, 5 bytes", HEAD("insert") "}", 5, DECODE_TABLE_ONLY },
	{ "ok, 1 byte", HEAD("truncate") "}", 1, DECODE_OK },
};

static void
test_decode_errlen(void **state)
{
	for (size_t i = 0; i < sizeof(errlen_cases) / sizeof(errlen_cases[0]); i++) {
		const struct errlen_case *c = &errlen_cases[i];
		char err[16];
		struct event ev;
		enum decode_result r;

		tcase = c->name;
		memset(err, 'x', sizeof(err));
		r = decode_event(c->payload, strlen(c->payload), &ev, err,
		    c->errlen);
		CHECK_INT(r, c->want);
		CHECK(memchr(err, '\0', c->errlen) != NULL);
		CHECK(err[c->errlen] == 'x');	/* nothing written past errlen */
		if (r != DECODE_JUNK)
			decode_event_free(&ev);
	}
	t_done();
}

/* The same struct event can be reused, freed in between. */
static void
test_decode_reuse(void **state)
{
	static const char *const payloads[] = {
		HEAD("update") ",\"o\":{\"id\":\"1\"},\"n\":{\"id\":\"2\"}}",
		HEAD("insert") "}",
		HEAD("truncate") "}",
		HEAD("delete") ",\"o\":{\"id\":\"3\",\"x\":null}}",
	};
	struct event ev;
	char err[128];

	for (int round = 0; round < 3; round++)
		for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
			enum decode_result r = decode_event(payloads[i],
			    strlen(payloads[i]), &ev, err, sizeof(err));

			assert_int_not_equal(r, DECODE_JUNK);
			assert_string_equal(ev.table, "public.users");
			decode_event_free(&ev);
		}
}

struct get_case {
	const char *name;
	const char *col;
	const char *want;	/* NULL: not found */
	bool null_value;	/* found, with an SQL NULL */
};

static const struct get_case get_cases[] = {
	{ "first column", "id", "42", false },
	{ "middle column", "email", "a@x.io", false },
	{ "null column", "deleted_at", NULL, true },
	{ "last column", "name", "Zo\xc3\xab", false },
	{ "missing column", "phone", NULL, false },
	{ "names are case-sensitive", "ID", NULL, false },
	{ "no prefix match", "i", NULL, false },
	{ "no longer match", "idx", NULL, false },
	{ "empty name", "", NULL, false },
	{ "quoted name", "we\"ird", "w", false },
};

static void
test_row_image_get(void **state)
{
	static const char payload[] = HEAD("insert") ",\"n\":{\"id\":\"42\","
	    "\"email\":\"a@x.io\",\"we\\\"ird\":\"w\",\"deleted_at\":null,"
	    "\"name\":\"Zo\\u00eb\"}}";
	static const struct row_image empty = { false, 0, NULL };
	struct event ev;
	char err[128];

	assert_int_equal(decode_event(payload, strlen(payload), &ev, err,
	    sizeof(err)), DECODE_OK);
	for (size_t i = 0; i < sizeof(get_cases) / sizeof(get_cases[0]); i++) {
		const struct get_case *c = &get_cases[i];
		const struct row_col *col = row_image_get(&ev.new, c->col);

		tcase = c->name;
		if (c->want == NULL && !c->null_value) {
			CHECK(col == NULL);
			continue;
		}
		CHECK(col != NULL);
		if (col == NULL)
			continue;
		CHECK_STR(col->name, c->col);
		CHECK_STR(col->val, c->want);
		/* Not in the absent old image, nor in an empty one. */
		CHECK(row_image_get(&ev.old, c->col) == NULL);
		CHECK(row_image_get(&empty, c->col) == NULL);
	}
	decode_event_free(&ev);
	t_done();
}

static void
test_event_op_name(void **state)
{
	static const struct {
		enum event_op op;
		const char *name;
	} cases[] = {
		{ EVENT_INSERT, "insert" },
		{ EVENT_UPDATE, "update" },
		{ EVENT_DELETE, "delete" },
		{ EVENT_TRUNCATE, "truncate" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char payload[128];
		struct event ev;
		char err[128];

		tcase = cases[i].name;
		CHECK_STR(event_op_name(cases[i].op), cases[i].name);
		/* The names are the ones decode_event reads. */
		snprintf(payload, sizeof(payload), "{\"v\":1,\"t\":\"a.b\","
		    "\"op\":\"%s\",\"big\":true}", cases[i].name);
		if (decode_event(payload, strlen(payload), &ev, err,
		    sizeof(err)) != DECODE_OK) {
			t_fail(__LINE__, "%s: %s", payload, err);
			continue;
		}
		CHECK_INT(ev.op, cases[i].op);
		decode_event_free(&ev);
	}
	t_done();
}

/* Payloads about several rows of one statement ("rows"). */
struct rows_case {
	const char *name;
	const char *payload;
	enum decode_result want;
	size_t nrows;
	const char *err;	/* substring, when not DECODE_OK */
};

static const struct rows_case rows_cases[] = {
	{ "two inserts", HEAD("insert") ",\"rows\":[{\"n\":{\"id\":\"1\"}},"
	    "{\"n\":{\"id\":\"2\"}}]}", DECODE_OK, 2, NULL },
	{ "updates", HEAD("update") ",\"rows\":[{\"o\":{\"id\":\"1\"},"
	    "\"n\":{\"id\":\"1\"}},{\"o\":{\"id\":\"2\"},\"n\":{\"id\":null}}]}",
	    DECODE_OK, 2, NULL },
	{ "one delete", HEAD("delete") ",\"rows\":[{\"o\":{\"id\":\"9\"}}]}",
	    DECODE_OK, 1, NULL },
	{ "not a list", HEAD("insert") ",\"rows\":{}}", DECODE_TABLE_ONLY, 0,
	    "not a list" },
	{ "empty list", HEAD("insert") ",\"rows\":[]}", DECODE_TABLE_ONLY, 0,
	    "not a list" },
	{ "a row is a string", HEAD("insert") ",\"rows\":[\"x\"]}",
	    DECODE_TABLE_ONLY, 0, "not an object" },
	{ "update without new", HEAD("update") ",\"rows\":[{\"o\":{\"id\":\"1\"},"
	    "\"n\":{\"id\":\"1\"}},{\"o\":{\"id\":\"2\"}}]}",
	    DECODE_TABLE_ONLY, 0, "without new row" },
	{ "a nested value", HEAD("insert") ",\"rows\":[{\"n\":{\"id\":[1]}}]}",
	    DECODE_TABLE_ONLY, 0, "not a scalar" },
};

static void
test_decode_rows(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rows_cases) / sizeof(rows_cases[0]); i++) {
		const struct rows_case *c = &rows_cases[i];
		struct event ev;
		char err[256];
		enum decode_result r;

		tcase = c->name;
		r = decode_event(c->payload, strlen(c->payload), &ev, err,
		    sizeof(err));
		CHECK_INT(r, c->want);
		if (r == DECODE_OK) {
			CHECK_INT(ev.nrows, c->nrows);
			CHECK(!ev.old.present && !ev.new.present);
			for (size_t j = 0; j < ev.nrows; j++)
				CHECK(ev.rows[j].old.present ==
				    (ev.op != EVENT_INSERT) &&
				    ev.rows[j].new.present ==
				    (ev.op != EVENT_DELETE));
		} else {
			CHECK(c->err == NULL || strstr(err, c->err) != NULL);
		}
		if (r != DECODE_JUNK)
			decode_event_free(&ev);
	}
	t_done();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_table),
		cmocka_unit_test(test_decode_rows),
		cmocka_unit_test(test_decode_len),
		cmocka_unit_test(test_decode_generated),
		cmocka_unit_test(test_decode_many_columns),
		cmocka_unit_test(test_decode_many_rows),
		cmocka_unit_test(test_decode_repeated_columns),
		cmocka_unit_test(test_decode_nul_bytes),
		cmocka_unit_test(test_decode_errlen),
		cmocka_unit_test(test_decode_reuse),
		cmocka_unit_test(test_row_image_get),
		cmocka_unit_test(test_event_op_name),
	};

	return cmocka_run_group_tests_name("decode", tests, NULL, NULL);
}
