/*
 * Unit tests for daemon/core/rules.c: compiling key templates, rendering keys
 * from row images, SCAN patterns and the key list.
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
#include "../../daemon/core/rules.h"

#include "tcheck.h"

/* ------------------------------------------------------------------ */
/* rules_compile, rules_count, rules_columns, rules_pattern */

#define MAXT 4

struct compile_case {
	const char *name;
	const char *spec;
	size_t count;
	const char *columns;
	const char *patterns[MAXT];
};

static const struct compile_case compile_cases[] = {
	{ "one column", "user:{id}", 1, "id", { "user:*" } },
	{ "two templates", "a:{x}:{y}, b:{y}", 2, "x, y", { "a:*:*", "b:*" } },
	{ "literal braces", "{{lit}}:{id}", 1, "id", { "{lit}:*" } },
	{ "braces around a column", "{{{id}}}", 1, "id", { "{*}" } },
	{ "closing literal brace alone", "a}}b:{id}", 1, "id", { "a}b:*" } },
	{ "whitespace trimmed", "  user:{id}\t,\tuser:email:{email}  ", 2,
	    "id, email", { "user:*", "user:email:*" } },
	{ "inner spaces kept", "my key:{id} x", 1, "id", { "my key:* x" } },
	{ "column name with a space", "k:{first name}", 1, "first name",
	    { "k:*" } },
	{ "literal only", "all-users", 1, "", { "all-users" } },
	{ "column only", "{id}", 1, "id", { "*" } },
	{ "adjacent columns", "{a}{b}", 1, "a, b", { "**" } },
	{ "a column in two templates", "x:{id},y:{id}", 2, "id",
	    { "x:*", "y:*" } },
	{ "a column twice in one template", "{id}:{id}", 1, "id", { "*:*" } },
	{ "glob characters escaped", "k*?[x]\\:{id}", 1, "id",
	    { "k\\*\\?\\[x\\]\\\\:*" } },
	{ "glob characters in several literals", "[{a}]*{b}?", 1, "a, b",
	    { "\\[*\\]\\**\\?" } },
	{ "four templates", "a:{w},b:{x},c:{y},d:{z}", 4, "w, x, y, z",
	    { "a:*", "b:*", "c:*", "d:*" } },
	{ "UTF-8 literal", "caf\xc3\xa9:{id}", 1, "id", { "caf\xc3\xa9:*" } },
};

static void
test_compile_good(void **state)
{
	for (size_t i = 0; i < sizeof(compile_cases) / sizeof(compile_cases[0]); i++) {
		const struct compile_case *c = &compile_cases[i];
		struct rule_set *rs = (struct rule_set *)&rs;	/* not NULL */
		char err[256] = "";

		tcase = c->name;
		if (rules_compile(c->spec, &rs, err, sizeof(err)) != 0) {
			t_fail(__LINE__, "rules_compile failed: %s", err);
			continue;
		}
		CHECK(rs != NULL);
		CHECK_INT(rules_count(rs), c->count);
		CHECK_STR(rules_columns(rs), c->columns);
		for (size_t t = 0; t < c->count && t < MAXT; t++) {
			char *p = rules_pattern(rs, t);

			CHECK_STR(p, c->patterns[t]);
			free(p);
		}
		rules_free(rs);
	}
	t_done();
}

/* rules_prefixed: one letter per template, y when it begins with literal
 * text (its sweep pattern then begins with that text too). */
struct prefixed_case {
	const char *spec;
	const char *want;
};

static const struct prefixed_case prefixed_cases[] = {
	{ "user:{id}", "y" },
	{ "u{id}", "y" },
	{ "all-users", "y" },
	{ "{id}", "n" },
	{ "{a}:{b}", "n" },
	{ "{tenant}:user:{id}", "n" },
	{ "{a}{b}", "n" },
	{ "{{lit}}:{id}", "y" },	/* a literal brace is text */
	{ "{{{id}}}", "y" },
	{ "  {id}", "n" },		/* blanks are trimmed, not text */
	{ "user:{id}, {id}:x, {{x", "yny" },
	{ "*{id}", "y" },		/* escaped in the pattern: "\**" */
};

static void
test_prefixed(void **state)
{
	for (size_t i = 0; i < sizeof(prefixed_cases) /
	    sizeof(prefixed_cases[0]); i++) {
		const struct prefixed_case *c = &prefixed_cases[i];
		struct rule_set *rs = NULL;
		char err[256] = "", got[8] = "";

		tcase = c->spec;
		if (rules_compile(c->spec, &rs, err, sizeof(err)) != 0) {
			t_fail(__LINE__, "rules_compile failed: %s", err);
			continue;
		}
		for (size_t t = 0; t < rules_count(rs) && t + 1 < sizeof(got);
		    t++)
			got[t] = rules_prefixed(rs, t) ? 'y' : 'n';
		CHECK_STR(got, c->want);
		rules_free(rs);
	}
	t_done();
}

struct bad_case {
	const char *name;
	const char *spec;
	const char *err;	/* the whole message */
};

static const struct bad_case bad_cases[] = {
	{ "empty", "", "empty key template" },
	{ "blank", " \t ", "empty key template" },
	{ "empty in the middle", "a,,b", "empty key template" },
	{ "blank in the middle", "a, ,b", "empty key template" },
	{ "trailing comma", "user:{id},", "empty key template" },
	{ "leading comma", ",user:{id}", "empty key template" },
	{ "unclosed brace", "a:{", "unclosed '{' in \"a:{\"" },
	{ "unclosed column", "a:{id", "unclosed '{' in \"a:{id\"" },
	{ "empty column", "a:{}", "bad column name in \"a:{}\"" },
	{ "lone closing brace", "a:}", "unmatched '}' in \"a:}\" (write '}}' "
	    "for a literal brace)" },
	{ "closing brace after a column", "a:{x}}", "unmatched '}' in "
	    "\"a:{x}}\" (write '}}' for a literal brace)" },
	{ "brace in a column name", "a:{x{y}", "bad column name in \"a:{x{y}\"" },
	{ "the second template is bad", "ok:{id}, a:{",
	    "unclosed '{' in \"a:{\"" },
	{ "the message shows the trimmed template", "ok:{id},   b:{}  ",
	    "bad column name in \"b:{}\"" },
};

static void
test_compile_bad(void **state)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		struct rule_set *rs = (struct rule_set *)&rs;
		char err[256] = "";

		tcase = c->name;
		if (rules_compile(c->spec, &rs, err, sizeof(err)) != -1) {
			t_fail(__LINE__, "rules_compile accepted \"%s\"", c->spec);
			rules_free(rs);
			continue;
		}
		CHECK(rs == NULL);
		CHECK_STR(err, c->err);
	}
	t_done();
}

/* ------------------------------------------------------------------ */
/* rules_render */

#define MAXC 4
#define MAXK 8

struct kv {
	const char *name;
	const char *val;	/* NULL: SQL NULL */
	size_t len;		/* 0: strlen(val) */
};

struct img {
	bool present;
	struct kv cols[MAXC];	/* up to the first NULL name */
};

struct key {
	const char *s;
	size_t len;		/* 0: strlen(s) */
};

struct render_case {
	const char *name;
	const char *spec;
	enum event_op op;
	struct img old, new;
	int rc;
	struct key keys[MAXK];	/* up to the first NULL */
	const char *err;	/* the whole message, when rc is -1 */
};

#define ROW(...) { true, { __VA_ARGS__ } }
#define NOROW { false, { { NULL, NULL, 0 } } }
#define K(s) { s, 0 }
#define KEYS(...) { __VA_ARGS__ }

static const struct render_case render_cases[] = {
	{ "insert", "user:{id}", EVENT_INSERT, NOROW, ROW({ "id", "42", 0 }), 0,
	    KEYS(K("user:42")), NULL },
	{ "delete", "user:{id}", EVENT_DELETE, ROW({ "id", "42", 0 }), NOROW, 0,
	    KEYS(K("user:42")), NULL },
	{ "update, key unchanged: one key", "user:{id}", EVENT_UPDATE,
	    ROW({ "id", "42", 0 }), ROW({ "id", "42", 0 }), 0,
	    KEYS(K("user:42")), NULL },
	{ "update, key changed: old then new", "user:{id}", EVENT_UPDATE,
	    ROW({ "id", "1", 0 }), ROW({ "id", "2", 0 }), 0,
	    KEYS(K("user:1"), K("user:2")), NULL },
	{ "two templates, every key changed", "user:{id}, user:email:{email}",
	    EVENT_UPDATE, ROW({ "id", "1", 0 }, { "email", "a@x.io", 0 }),
	    ROW({ "id", "2", 0 }, { "email", "b@x.io", 0 }), 0,
	    KEYS(K("user:1"), K("user:email:a@x.io"), K("user:2"),
		K("user:email:b@x.io")), NULL },
	{ "two templates, one key changed", "user:{id}, user:email:{email}",
	    EVENT_UPDATE, ROW({ "id", "1", 0 }, { "email", "a@x.io", 0 }),
	    ROW({ "id", "1", 0 }, { "email", "b@x.io", 0 }), 0,
	    KEYS(K("user:1"), K("user:email:a@x.io"), K("user:email:b@x.io")),
	    NULL },
	{ "two templates, nothing changed", "user:{id}, user:email:{email}",
	    EVENT_UPDATE, ROW({ "id", "1", 0 }, { "email", "a@x.io", 0 }),
	    ROW({ "id", "1", 0 }, { "email", "a@x.io", 0 }), 0,
	    KEYS(K("user:1"), K("user:email:a@x.io")), NULL },
	{ "templates giving the same key", "k:{a}, k:{b}", EVENT_INSERT, NOROW,
	    ROW({ "a", "1", 0 }, { "b", "1", 0 }), 0, KEYS(K("k:1")), NULL },
	{ "new key equal to another old key", "a:{x}, a:{y}", EVENT_UPDATE,
	    ROW({ "x", "1", 0 }, { "y", "2", 0 }),
	    ROW({ "x", "2", 0 }, { "y", "3", 0 }), 0,
	    KEYS(K("a:1"), K("a:2"), K("a:3")), NULL },
	{ "columns in another order than the template", "{b}/{a}",
	    EVENT_INSERT, NOROW, ROW({ "a", "A", 0 }, { "b", "B", 0 }), 0,
	    KEYS(K("B/A")), NULL },
	{ "NULL skips that template only", "user:{id}, user:email:{email}",
	    EVENT_INSERT, NOROW, ROW({ "id", "1", 0 }, { "email", NULL, 0 }), 0,
	    KEYS(K("user:1")), NULL },
	{ "NULL in the old row only", "user:{id}, user:email:{email}",
	    EVENT_UPDATE, ROW({ "id", "1", 0 }, { "email", NULL, 0 }),
	    ROW({ "id", "1", 0 }, { "email", "b@x.io", 0 }), 0,
	    KEYS(K("user:1"), K("user:email:b@x.io")), NULL },
	{ "NULL in the new row only", "user:{id}, user:email:{email}",
	    EVENT_UPDATE, ROW({ "id", "1", 0 }, { "email", "a@x.io", 0 }),
	    ROW({ "id", "1", 0 }, { "email", NULL, 0 }), 0,
	    KEYS(K("user:1"), K("user:email:a@x.io")), NULL },
	{ "NULL in one column of two", "a:{x}:{y}, b:{x}", EVENT_INSERT, NOROW,
	    ROW({ "x", "1", 0 }, { "y", NULL, 0 }), 0, KEYS(K("b:1")), NULL },
	{ "all NULL: no keys", "a:{x}", EVENT_DELETE,
	    ROW({ "x", NULL, 0 }), NOROW, 0, KEYS({ NULL, 0 }), NULL },
	{ "empty value is not NULL", "u:{id}", EVENT_INSERT, NOROW,
	    ROW({ "id", "", 0 }), 0, KEYS(K("u:")), NULL },
	{ "empty key from an empty value", "{id}", EVENT_INSERT, NOROW,
	    ROW({ "id", "", 0 }), 0, KEYS(K("")), NULL },
	{ "literal-only template", "all, u:{id}", EVENT_UPDATE,
	    ROW({ "id", "1", 0 }), ROW({ "id", "2", 0 }), 0,
	    KEYS(K("all"), K("u:1"), K("u:2")), NULL },
	{ "literal braces", "{{lit}}:{id}", EVENT_INSERT, NOROW,
	    ROW({ "id", "5", 0 }), 0, KEYS(K("{lit}:5")), NULL },
	{ "braces, colons, spaces in values", "k:{v}", EVENT_INSERT, NOROW,
	    ROW({ "v", "{a}:b c}}{{", 0 }), 0, KEYS(K("k:{a}:b c}}{{")), NULL },
	{ "newlines and tabs in values", "k:{v}", EVENT_INSERT, NOROW,
	    ROW({ "v", "line1\nline2\r\n\tx", 0 }), 0,
	    KEYS(K("k:line1\nline2\r\n\tx")), NULL },
	{ "UTF-8 in values", "k:{v}", EVENT_INSERT, NOROW,
	    ROW({ "v", "Zo\xc3\xab \xe2\x98\x83 \xf0\x9f\x98\x80", 0 }), 0,
	    KEYS(K("k:Zo\xc3\xab \xe2\x98\x83 \xf0\x9f\x98\x80")), NULL },
	{ "glob characters in values are not escaped", "k:{v}", EVENT_INSERT,
	    NOROW, ROW({ "v", "*?[]\\", 0 }), 0, KEYS(K("k:*?[]\\")), NULL },
	{ "quotes in values", "k:{v}", EVENT_INSERT, NOROW,
	    ROW({ "v", "\"'`", 0 }), 0, KEYS(K("k:\"'`")), NULL },
	{ "binary value with a NUL", "k:{v}:end", EVENT_INSERT, NOROW,
	    ROW({ "v", "a\0b", 3 }), 0, KEYS({ "k:a\0b:end", 9 }), NULL },
	{ "values differing after a NUL are two keys", "k:{v}", EVENT_UPDATE,
	    ROW({ "v", "a\0b", 3 }), ROW({ "v", "a\0c", 3 }), 0,
	    KEYS({ "k:a\0b", 5 }, { "k:a\0c", 5 }), NULL },
	{ "prefix values are two keys", "k:{v}", EVENT_UPDATE,
	    ROW({ "v", "ab", 0 }), ROW({ "v", "a", 0 }), 0,
	    KEYS(K("k:ab"), K("k:a")), NULL },
	{ "no images: no keys", "user:{id}", EVENT_TRUNCATE, NOROW, NOROW, 0,
	    KEYS({ NULL, 0 }), NULL },
	{ "missing column", "user:{id}, e:{email}", EVENT_INSERT, NOROW,
	    ROW({ "id", "1", 0 }), -1, KEYS({ NULL, 0 }),
	    "column \"email\" is not in the event" },
	{ "missing column in the old row only", "user:{id}", EVENT_UPDATE,
	    ROW({ "other", "1", 0 }), ROW({ "id", "1", 0 }), -1,
	    KEYS({ NULL, 0 }), "column \"id\" is not in the event" },
	{ "missing column in the new row only", "user:{id}", EVENT_UPDATE,
	    ROW({ "id", "1", 0 }), ROW({ "ID", "1", 0 }), -1,
	    KEYS({ NULL, 0 }), "column \"id\" is not in the event" },
	{ "missing column in an empty row", "k:{a b}", EVENT_DELETE,
	    { true, { { NULL, NULL, 0 } } }, NOROW, -1, KEYS({ NULL, 0 }),
	    "column \"a b\" is not in the event" },
	{ "a missing column is found after a NULL", "k:{a}:{b}", EVENT_INSERT,
	    NOROW, ROW({ "a", NULL, 0 }), -1, KEYS({ NULL, 0 }),
	    "column \"b\" is not in the event" },
};

static size_t
kv_len(const struct kv *kv)
{
	return kv->len ? kv->len : strlen(kv->val);
}

/* Builds a row image from a case's columns; free img->cols. */
static void
make_image(const struct img *in, struct row_image *img)
{
	size_t n = 0;

	memset(img, 0, sizeof(*img));
	if (!in->present)
		return;
	while (n < MAXC && in->cols[n].name != NULL)
		n++;
	img->present = true;
	img->n = n;
	img->cols = calloc(n ? n : 1, sizeof(*img->cols));
	assert_non_null(img->cols);
	for (size_t i = 0; i < n; i++) {
		img->cols[i].name = in->cols[i].name;
		img->cols[i].val = in->cols[i].val;
		img->cols[i].len = in->cols[i].val ? kv_len(&in->cols[i]) : 0;
	}
}

static void
check_keys(int line, const struct keys *k, const struct key *want)
{
	size_t n = 0;

	while (n < MAXK && want[n].s != NULL)
		n++;
	if (k->n != n)
		t_fail(line, "%zu keys, want %zu", k->n, n);
	for (size_t i = 0; i < k->n && i < n; i++) {
		size_t len;
		const char *s = keys_get(k, i, &len);
		char what[32];

		snprintf(what, sizeof(what), "key %zu", i);
		t_check_mem(line, what, s, len, want[i].s,
		    want[i].len ? want[i].len : strlen(want[i].s));
	}
}

static void
test_render(void **state)
{
	for (size_t i = 0; i < sizeof(render_cases) / sizeof(render_cases[0]); i++) {
		const struct render_case *c = &render_cases[i];
		struct rule_set *rs;
		struct event ev;
		struct keys k = { 0 };
		char err[256] = "";
		int rc;

		tcase = c->name;
		if (rules_compile(c->spec, &rs, err, sizeof(err)) != 0) {
			t_fail(__LINE__, "rules_compile: %s", err);
			continue;
		}
		memset(&ev, 0, sizeof(ev));
		ev.op = c->op;
		ev.table = "public.users";
		make_image(&c->old, &ev.old);
		make_image(&c->new, &ev.new);
		rc = rules_render(rs, &ev, &k, err, sizeof(err));
		CHECK_INT(rc, c->rc);
		if (c->rc == 0)
			check_keys(__LINE__, &k, c->keys);
		else
			CHECK_STR(err, c->err);
		/* Rendering again into the reset list gives the same. */
		if (rc == 0) {
			keys_reset(&k);
			CHECK_INT(rules_render(rs, &ev, &k, err, sizeof(err)), 0);
			check_keys(__LINE__, &k, c->keys);
		}
		keys_free(&k);
		free(ev.old.cols);
		free(ev.new.cols);
		rules_free(rs);
	}
	t_done();
}

/* The same, from payloads decoded the way the daemon gets them. */
struct payload_case {
	const char *name;
	const char *spec;
	const char *payload;
	int rc;
	struct key keys[MAXK];
};

static const struct payload_case payload_cases[] = {
	{ "decoded update", "user:{id}, user:email:{email}",
	    "{\"v\":1,\"t\":\"public.users\",\"op\":\"update\",\"ts\":1,\"x\":2,"
	    "\"o\":{\"id\":\"42\",\"email\":\"a@x.io\"},"
	    "\"n\":{\"id\":\"42\",\"email\":\"b@x.io\"}}", 0,
	    KEYS(K("user:42"), K("user:email:a@x.io"), K("user:email:b@x.io")) },
	{ "decoded insert with escapes", "k:{v}",
	    "{\"v\":1,\"t\":\"a.b\",\"op\":\"insert\","
	    "\"n\":{\"v\":\"x\\\"y\\\\z\\n\\u00e9\\\\u0000\"}}", 0,
	    KEYS(K("k:x\"y\\z\n\xc3\xa9\\u0000")) },
	{ "decoded delete with a NULL", "a:{id}, b:{email}",
	    "{\"v\":1,\"t\":\"a.b\",\"op\":\"delete\","
	    "\"o\":{\"id\":\"1\",\"email\":null}}", 0, KEYS(K("a:1")) },
	{ "decoded numbers", "n:{i}:{f}:{b}",
	    "{\"v\":1,\"t\":\"a.b\",\"op\":\"insert\","
	    "\"n\":{\"i\":7,\"f\":2.5,\"b\":true}}", 0, KEYS(K("n:7:2.5:true")) },
	{ "decoded row lacking a column", "a:{id}, b:{email}",
	    "{\"v\":1,\"t\":\"a.b\",\"op\":\"insert\",\"n\":{\"id\":\"1\"}}", -1,
	    KEYS({ NULL, 0 }) },
};

static void
test_render_decoded(void **state)
{
	for (size_t i = 0; i < sizeof(payload_cases) / sizeof(payload_cases[0]); i++) {
		const struct payload_case *c = &payload_cases[i];
		struct rule_set *rs;
		struct event ev;
		struct keys k = { 0 };
		char err[256] = "";

		tcase = c->name;
		if (rules_compile(c->spec, &rs, err, sizeof(err)) != 0) {
			t_fail(__LINE__, "rules_compile: %s", err);
			continue;
		}
		if (decode_event(c->payload, strlen(c->payload), &ev, err,
		    sizeof(err)) != DECODE_OK) {
			t_fail(__LINE__, "decode_event: %s", err);
			rules_free(rs);
			continue;
		}
		CHECK_INT(rules_render(rs, &ev, &k, err, sizeof(err)), c->rc);
		if (c->rc == 0)
			check_keys(__LINE__, &k, c->keys);
		keys_free(&k);
		decode_event_free(&ev);
		rules_free(rs);
	}
	t_done();
}

/* A too small err buffer is filled, NUL-terminated, and not overrun. */
static void
test_err_truncated(void **state)
{
	static const size_t sizes[] = { 1, 2, 10, 20 };
	struct rule_set *rs;
	char err[32];

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		memset(err, 'x', sizeof(err));
		assert_int_equal(rules_compile("a:{", &rs, err, sizes[i]), -1);
		assert_non_null(memchr(err, '\0', sizes[i]));
		assert_int_equal(err[sizes[i]], 'x');
	}
}

/* ------------------------------------------------------------------ */
/* The key list */

struct keys_case {
	const char *name;
	struct key add[MAXK];	/* added in order */
	struct key want[MAXK];	/* the list afterwards */
};

static const struct keys_case keys_cases[] = {
	{ "empty", { { NULL, 0 } }, { { NULL, 0 } } },
	{ "one", { K("a") }, { K("a") } },
	{ "duplicates dropped, order kept", { K("b"), K("a"), K("b"), K("a"),
	    K("c") }, { K("b"), K("a"), K("c") } },
	{ "prefixes are different keys", { K("ab"), K("a"), K("abc") },
	    { K("ab"), K("a"), K("abc") } },
	{ "binary keys", { { "a\0b", 3 }, { "a\0c", 3 }, { "a\0b", 3 }, K("a") },
	    { { "a\0b", 3 }, { "a\0c", 3 }, K("a") } },
};

static void
test_keys(void **state)
{
	for (size_t i = 0; i < sizeof(keys_cases) / sizeof(keys_cases[0]); i++) {
		const struct keys_case *c = &keys_cases[i];
		struct keys k = { 0 };

		tcase = c->name;
		for (int round = 0; round < 2; round++) {
			for (size_t j = 0; j < MAXK && c->add[j].s != NULL; j++)
				keys_add(&k, c->add[j].s, c->add[j].len ?
				    c->add[j].len : strlen(c->add[j].s));
			check_keys(__LINE__, &k, c->want);
			keys_reset(&k);
			CHECK_INT(k.n, 0);
		}
		keys_free(&k);
		CHECK(k.n == 0 && k.off == NULL && k.len == NULL &&
		    k.data.data == NULL);
	}
	t_done();
}

/* Many keys: the list grows and keeps them all. */
static void
test_keys_many(void **state)
{
	struct keys k = { 0 };
	char key[32];

	for (int i = 0; i < 1000; i++) {
		int n = snprintf(key, sizeof(key), "key:%d", i);

		keys_add(&k, key, (size_t)n);
		keys_add(&k, key, (size_t)n);	/* a duplicate */
	}
	assert_int_equal(k.n, 1000);
	for (int i = 0; i < 1000; i += 37) {
		size_t len;
		const char *s = keys_get(&k, (size_t)i, &len);
		int n = snprintf(key, sizeof(key), "key:%d", i);

		assert_int_equal(len, n);
		assert_memory_equal(s, key, len);
	}
	keys_free(&k);
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
		struct strs v = { 0 };
		char err[128];
		int found;

		tcase = cases[i].name;
		if (rules_compile(cases[i].spec, &rs, err, sizeof(err)) == -1) {
			t_fail(__LINE__, "compile: %s", err);
			continue;
		}
		found = rules_match(rs, 0, cases[i].key, strlen(cases[i].key), &v);
		if (found != cases[i].found)
			t_fail(__LINE__, "found %d, want %d", found, cases[i].found);
		for (size_t j = 0; found == 1 && j < 3 && cases[i].values[j]; j++) {
			const char *got = j < v.n ? strs_get(&v, j, NULL) : "(none)";

			if (strcmp(got, cases[i].values[j]) != 0)
				t_fail(__LINE__, "value %zu \"%s\", want \"%s\"", j, got,
				    cases[i].values[j]);
		}
		strs_free(&v);
		rules_free(rs);
	}
	t_done();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_compile_good),
		cmocka_unit_test(test_compile_bad),
		cmocka_unit_test(test_prefixed),
		cmocka_unit_test(test_render),
		cmocka_unit_test(test_render_decoded),
		cmocka_unit_test(test_err_truncated),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_keys_many),
		cmocka_unit_test(test_template_match),
	};

	return cmocka_run_group_tests_name("rules", tests, NULL, NULL);
}
