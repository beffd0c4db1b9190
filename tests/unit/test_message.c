/*
 * Unit tests for daemon/message.c: the exact bytes of event and reset
 * messages, JSON escaping, and that every message parses as JSON.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "../../daemon/buf.h"
#include "../../daemon/decode.h"
#include "../../daemon/message.h"
#include "../../daemon/rules.h"

#include "tcheck.h"

/* ------------------------------------------------------------------ */

#define MAXC 4
#define MAXK 4

struct kv {
	const char *name;
	const char *val;	/* NULL: SQL NULL */
};

struct img {
	bool present;
	struct kv cols[MAXC];	/* up to the first NULL name */
};

struct key {
	const char *s;
	size_t len;		/* 0: strlen(s) */
};

struct event_case {
	const char *name;
	enum event_op op;
	const char *table;
	int64_t ts;
	bool big;
	struct img old, new;
	struct key keys[MAXK];	/* up to the first NULL */
	uint64_t seq;
	const char *epoch;
	const char *want;	/* the framed message */
};

#define ROW(...) { true, { __VA_ARGS__ } }
#define NOROW { false, { { NULL, NULL } } }
#define K(s) { s, 0 }
#define NOKEYS { { NULL, 0 } }
#define EPOCH "0123456789abcdef0123456789abcdef"

static const struct event_case event_cases[] = {
	{ "update", EVENT_UPDATE, "public.users", 123, false,
	    ROW({ "id", "42" }), ROW({ "id", "42" }), { K("user:42") }, 7, "abc",
	    "{\"v\":1,\"seq\":7,\"epoch\":\"abc\",\"op\":\"update\","
	    "\"table\":\"public.users\",\"keys\":[\"user:42\"],\"ts\":123,"
	    "\"old\":{\"id\":\"42\"},\"new\":{\"id\":\"42\"}}" },
	{ "insert", EVENT_INSERT, "public.users", 1764240000123456, false,
	    NOROW, ROW({ "id", "1" }, { "email", "a@x.io" }),
	    { K("user:1"), K("user:email:a@x.io") }, 1, EPOCH,
	    "{\"v\":1,\"seq\":1,\"epoch\":\"" EPOCH "\",\"op\":\"insert\","
	    "\"table\":\"public.users\",\"keys\":[\"user:1\","
	    "\"user:email:a@x.io\"],\"ts\":1764240000123456,"
	    "\"new\":{\"id\":\"1\",\"email\":\"a@x.io\"}}" },
	{ "delete", EVENT_DELETE, "shop.orders", 9, false,
	    ROW({ "id", "77" }), NOROW, { K("order:77") }, 18446744073709551615u,
	    EPOCH,
	    "{\"v\":1,\"seq\":18446744073709551615,\"epoch\":\"" EPOCH "\","
	    "\"op\":\"delete\",\"table\":\"shop.orders\",\"keys\":[\"order:77\"],"
	    "\"ts\":9,\"old\":{\"id\":\"77\"}}" },
	{ "truncate with no keys", EVENT_TRUNCATE, "public.users", 5, false,
	    NOROW, NOROW, NOKEYS, 2, "e",
	    "{\"v\":1,\"seq\":2,\"epoch\":\"e\",\"op\":\"truncate\","
	    "\"table\":\"public.users\",\"keys\":[],\"ts\":5}" },
	{ "big update with no keys", EVENT_UPDATE, "public.users", 6, true,
	    NOROW, NOROW, NOKEYS, 3, "e",
	    "{\"v\":1,\"seq\":3,\"epoch\":\"e\",\"op\":\"update\","
	    "\"table\":\"public.users\",\"keys\":[],\"ts\":6}" },
	{ "update with keys, old and new", EVENT_UPDATE, "public.users", 0,
	    false, ROW({ "id", "1" }, { "email", "a@x.io" }),
	    ROW({ "id", "2" }, { "email", "b@x.io" }),
	    { K("user:1"), K("user:email:a@x.io"), K("user:2"),
		K("user:email:b@x.io") }, 0, "",
	    "{\"v\":1,\"seq\":0,\"epoch\":\"\",\"op\":\"update\","
	    "\"table\":\"public.users\",\"keys\":[\"user:1\","
	    "\"user:email:a@x.io\",\"user:2\",\"user:email:b@x.io\"],\"ts\":0,"
	    "\"old\":{\"id\":\"1\",\"email\":\"a@x.io\"},"
	    "\"new\":{\"id\":\"2\",\"email\":\"b@x.io\"}}" },
	{ "null values", EVENT_UPDATE, "public.users", 1, false,
	    ROW({ "id", "1" }, { "email", NULL }),
	    ROW({ "id", "1" }, { "email", "" }), { K("user:1") }, 4, "e",
	    "{\"v\":1,\"seq\":4,\"epoch\":\"e\",\"op\":\"update\","
	    "\"table\":\"public.users\",\"keys\":[\"user:1\"],\"ts\":1,"
	    "\"old\":{\"id\":\"1\",\"email\":null},"
	    "\"new\":{\"id\":\"1\",\"email\":\"\"}}" },
	{ "empty images", EVENT_DELETE, "a.b", 1, false,
	    { true, { { NULL, NULL } } }, NOROW, NOKEYS, 4, "e",
	    "{\"v\":1,\"seq\":4,\"epoch\":\"e\",\"op\":\"delete\","
	    "\"table\":\"a.b\",\"keys\":[],\"ts\":1,\"old\":{}}" },
	{ "quotes and backslashes", EVENT_INSERT, "public.users", 1, false,
	    NOROW, ROW({ "v", "say \"hi\" \\o/" }),
	    { K("k:\"q\"\\") }, 5, "e",
	    "{\"v\":1,\"seq\":5,\"epoch\":\"e\",\"op\":\"insert\","
	    "\"table\":\"public.users\",\"keys\":[\"k:\\\"q\\\"\\\\\"],\"ts\":1,"
	    "\"new\":{\"v\":\"say \\\"hi\\\" \\\\o/\"}}" },
	{ "control characters", EVENT_INSERT, "public.users", 1, false,
	    NOROW, ROW({ "v", "a\nb\rc\td\be\ff\001g\037h\177i" }),
	    { K("k:\n\001") }, 6, "e",
	    "{\"v\":1,\"seq\":6,\"epoch\":\"e\",\"op\":\"insert\","
	    "\"table\":\"public.users\",\"keys\":[\"k:\\n\\u0001\"],\"ts\":1,"
	    "\"new\":{\"v\":\"a\\nb\\rc\\td\\be\\ff\\u0001g\\u001fh\177i\"}}" },
	{ "a NUL byte in a key", EVENT_INSERT, "public.users", 1, false,
	    NOROW, ROW({ "v", "x" }), { { "k:a\0b", 5 } }, 6, "e",
	    "{\"v\":1,\"seq\":6,\"epoch\":\"e\",\"op\":\"insert\","
	    "\"table\":\"public.users\",\"keys\":[\"k:a\\u0000b\"],\"ts\":1,"
	    "\"new\":{\"v\":\"x\"}}" },
	{ "UTF-8 passes through", EVENT_INSERT, "public.caf\xc3\xa9", 1, false,
	    NOROW, ROW({ "n\xc3\xa4me", "Zo\xc3\xab \xe2\x98\x83 \xf0\x9f\x98\x80" }),
	    { K("k:\xe2\x98\x83") }, 8, "e",
	    "{\"v\":1,\"seq\":8,\"epoch\":\"e\",\"op\":\"insert\","
	    "\"table\":\"public.caf\xc3\xa9\",\"keys\":[\"k:\xe2\x98\x83\"],"
	    "\"ts\":1,\"new\":{\"n\xc3\xa4me\":\"Zo\xc3\xab \xe2\x98\x83 "
	    "\xf0\x9f\x98\x80\"}}" },
	{ "escaped names", EVENT_DELETE, "my \"schema\".back\\slash", -1, false,
	    ROW({ "we\"ird\n", "1" }), NOROW, NOKEYS, 9, "e",
	    "{\"v\":1,\"seq\":9,\"epoch\":\"e\",\"op\":\"delete\","
	    "\"table\":\"my \\\"schema\\\".back\\\\slash\",\"keys\":[],\"ts\":-1,"
	    "\"old\":{\"we\\\"ird\\n\":\"1\"}}" },
	{ "braces and colons are plain text", EVENT_INSERT, "a.b",
	    INT64_MAX, false, NOROW, ROW({ "v", "{\"x\":[1]}" }),
	    { K("{a}:[b]") }, 10, "e",
	    "{\"v\":1,\"seq\":10,\"epoch\":\"e\",\"op\":\"insert\","
	    "\"table\":\"a.b\",\"keys\":[\"{a}:[b]\"],"
	    "\"ts\":9223372036854775807,\"new\":{\"v\":\"{\\\"x\\\":[1]}\"}}" },
};

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
		img->cols[i].len = in->cols[i].val ? strlen(in->cols[i].val) : 0;
	}
}

/* The parsed image matches the one sent. */
static void
check_json_image(const cJSON *root, const char *which, const struct img *img)
{
	const cJSON *obj = cJSON_GetObjectItemCaseSensitive(root, which);
	size_t n = 0;

	if (!img->present) {
		if (obj != NULL)
			t_fail(__LINE__, "\"%s\" should be absent", which);
		return;
	}
	if (!cJSON_IsObject(obj)) {
		t_fail(__LINE__, "\"%s\" is not an object", which);
		return;
	}
	for (; n < MAXC && img->cols[n].name != NULL; n++) {
		const struct kv *kv = &img->cols[n];
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, kv->name);

		if (kv->val == NULL ? !cJSON_IsNull(v) :
		    !cJSON_IsString(v) || strcmp(v->valuestring, kv->val) != 0)
			t_fail(__LINE__, "%s.%s does not read back", which,
			    kv->name);
	}
	if ((size_t)cJSON_GetArraySize(obj) != n)
		t_fail(__LINE__, "\"%s\" has %d members, want %zu", which,
		    cJSON_GetArraySize(obj), n);
}

/* Parses a whole message and returns the document, or NULL. */
static cJSON *
parse_message(const struct buf *msg)
{
	const char *end = NULL;
	cJSON *root;

	if (msg->len == 0 || strlen(msg->data) != msg->len) {
		t_fail(__LINE__, "message holds a NUL byte");
		return NULL;
	}
	root = cJSON_ParseWithOpts(msg->data, &end, 1);
	if (root == NULL) {
		t_fail(__LINE__, "not JSON, near offset %td",
		    cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - msg->data : -1);
		return NULL;
	}
	if (!cJSON_IsObject(root)) {
		t_fail(__LINE__, "not a JSON object");
		cJSON_Delete(root);
		return NULL;
	}
	return root;
}

static void
check_envelope(const cJSON *root, uint64_t seq, const char *epoch,
    const char *op)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "v");
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "seq");
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "epoch");
	const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "op");

	CHECK(cJSON_IsNumber(v) && v->valuedouble == 1);
	CHECK(cJSON_IsNumber(s) && s->valuedouble == (double)seq);
	CHECK(cJSON_IsString(e) && strcmp(e->valuestring, epoch) == 0);
	CHECK(cJSON_IsString(o) && strcmp(o->valuestring, op) == 0);
}

static void
test_event_messages(void **state)
{
	for (size_t i = 0; i < sizeof(event_cases) / sizeof(event_cases[0]); i++) {
		const struct event_case *c = &event_cases[i];
		struct event ev;
		struct keys keys = { 0 };
		struct buf body = { 0 }, msg = { 0 };
		size_t nkeys = 0;
		cJSON *root;

		tcase = c->name;
		memset(&ev, 0, sizeof(ev));
		ev.op = c->op;
		ev.table = c->table;
		ev.ts = c->ts;
		ev.big = c->big;
		make_image(&c->old, &ev.old);
		make_image(&c->new, &ev.new);
		for (; nkeys < MAXK && c->keys[nkeys].s != NULL; nkeys++)
			keys_add(&keys, c->keys[nkeys].s, c->keys[nkeys].len ?
			    c->keys[nkeys].len : strlen(c->keys[nkeys].s));

		message_body_event(&body, &ev, &keys);
		message_frame(&msg, c->seq, c->epoch, body.data, body.len);
		t_check_mem(__LINE__, "message", msg.data, msg.len, c->want,
		    strlen(c->want));
		/* The body is the message from "op" on. */
		CHECK(body.len < msg.len && memcmp(msg.data + msg.len - body.len,
		    body.data, body.len) == 0);
		CHECK(strncmp(body.data, "\"op\":", 5) == 0);

		root = parse_message(&msg);
		if (root != NULL) {
			const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "table");
			const cJSON *k = cJSON_GetObjectItemCaseSensitive(root, "keys");
			const cJSON *ts = cJSON_GetObjectItemCaseSensitive(root, "ts");

			check_envelope(root, c->seq, c->epoch,
			    event_op_name(c->op));
			CHECK(cJSON_IsString(t) &&
			    strcmp(t->valuestring, c->table) == 0);
			CHECK(cJSON_IsNumber(ts) &&
			    ts->valuedouble == (double)c->ts);
			CHECK(cJSON_IsArray(k) &&
			    (size_t)cJSON_GetArraySize(k) == nkeys);
			for (size_t j = 0; cJSON_IsArray(k) && j < nkeys; j++) {
				const cJSON *key = cJSON_GetArrayItem(k, (int)j);

				/* cJSON stops a string at a NUL. */
				CHECK(cJSON_IsString(key) &&
				    strcmp(key->valuestring, c->keys[j].s) == 0);
			}
			check_json_image(root, "old", &c->old);
			check_json_image(root, "new", &c->new);
			CHECK(cJSON_GetObjectItemCaseSensitive(root, "reason") == NULL);
			cJSON_Delete(root);
		}

		/* A NULL key list is an empty one. */
		if (nkeys == 0) {
			struct buf b2 = { 0 };

			message_body_event(&b2, &ev, NULL);
			t_check_mem(__LINE__, "body with NULL keys", b2.data,
			    b2.len, body.data, body.len);
			buf_free(&b2);
		}
		buf_free(&body);
		buf_free(&msg);
		keys_free(&keys);
		free(ev.old.cols);
		free(ev.new.cols);
	}
	t_done();
}

/* Every control character is escaped, and reads back. */
static void
test_all_control_chars(void **state)
{
	struct row_col col = { "v", NULL, 0, "" };
	struct event ev;
	struct buf body = { 0 }, msg = { 0 };
	char val[0x21];
	cJSON *root;
	const cJSON *v;

	for (int c = 1; c <= 0x20; c++)
		val[c - 1] = (char)c;
	val[0x20] = '\0';
	col.val = val;
	col.len = strlen(val);
	memset(&ev, 0, sizeof(ev));
	ev.op = EVENT_INSERT;
	ev.table = "a.b";
	ev.new.present = true;
	ev.new.n = 1;
	ev.new.cols = &col;
	message_body_event(&body, &ev, NULL);
	message_frame(&msg, 1, "e", body.data, body.len);
	for (size_t i = 0; i < msg.len; i++)
		assert_true((unsigned char)msg.data[i] >= 0x20);
	assert_non_null(strstr(msg.data, "\"\\u0001\\u0002\\u0003\\u0004"
	    "\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f\\u0010"
	    "\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019"
	    "\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f \""));
	root = cJSON_Parse(msg.data);
	assert_non_null(root);
	v = cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(root, "new"), "v");
	assert_true(cJSON_IsString(v));
	assert_string_equal(v->valuestring, val);
	cJSON_Delete(root);
	buf_free(&body);
	buf_free(&msg);
}

/* ------------------------------------------------------------------ */

struct reset_case {
	const char *name;
	const char *table;	/* NULL: every table */
	const char *reason;
	int64_t ts;
	uint64_t seq;
	const char *want;
};

static const struct reset_case reset_cases[] = {
	{ "a character cut off at the end is dropped", "a.b", "x\xe2\x98", 3,
	    16, "{\"v\":1,\"seq\":16,\"epoch\":\"" EPOCH "\",\"op\":\"reset\","
	    "\"table\":\"a.b\",\"keys\":[],\"ts\":3,\"reason\":\"x\"}" },
	{ "one table", "public.users", "payload too big", 99, 11,
	    "{\"v\":1,\"seq\":11,\"epoch\":\"" EPOCH "\",\"op\":\"reset\","
	    "\"table\":\"public.users\",\"keys\":[],\"ts\":99,"
	    "\"reason\":\"payload too big\"}" },
	{ "every table", NULL, "lost the PostgreSQL connection", 1, 12,
	    "{\"v\":1,\"seq\":12,\"epoch\":\"" EPOCH "\",\"op\":\"reset\","
	    "\"table\":null,\"keys\":[],\"ts\":1,"
	    "\"reason\":\"lost the PostgreSQL connection\"}" },
	{ "escaped reason", "a.b", "column \"id\" is not in the event\n\\x", 0,
	    13,
	    "{\"v\":1,\"seq\":13,\"epoch\":\"" EPOCH "\",\"op\":\"reset\","
	    "\"table\":\"a.b\",\"keys\":[],\"ts\":0,"
	    "\"reason\":\"column \\\"id\\\" is not in the event\\n\\\\x\"}" },
	{ "empty reason", NULL, "", -5, 14,
	    "{\"v\":1,\"seq\":14,\"epoch\":\"" EPOCH "\",\"op\":\"reset\","
	    "\"table\":null,\"keys\":[],\"ts\":-5,\"reason\":\"\"}" },
	{ "UTF-8 and control characters", "s.t\xc3\xa9", "\001\xe2\x98\x83",
	    2, 15,
	    "{\"v\":1,\"seq\":15,\"epoch\":\"" EPOCH "\",\"op\":\"reset\","
	    "\"table\":\"s.t\xc3\xa9\",\"keys\":[],\"ts\":2,"
	    "\"reason\":\"\\u0001\xe2\x98\x83\"}" },
};

static void
test_reset_messages(void **state)
{
	for (size_t i = 0; i < sizeof(reset_cases) / sizeof(reset_cases[0]); i++) {
		const struct reset_case *c = &reset_cases[i];
		struct buf body = { 0 }, msg = { 0 };
		cJSON *root;

		tcase = c->name;
		message_body_reset(&body, c->table, c->reason, c->ts);
		message_frame(&msg, c->seq, EPOCH, body.data, body.len);
		t_check_mem(__LINE__, "message", msg.data, msg.len, c->want,
		    strlen(c->want));
		root = parse_message(&msg);
		if (root != NULL) {
			const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "table");
			const cJSON *k = cJSON_GetObjectItemCaseSensitive(root, "keys");
			const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "reason");
			const cJSON *ts = cJSON_GetObjectItemCaseSensitive(root, "ts");

			check_envelope(root, c->seq, EPOCH, "reset");
			if (c->table == NULL)
				CHECK(cJSON_IsNull(t));
			else
				CHECK(cJSON_IsString(t) &&
				    strcmp(t->valuestring, c->table) == 0);
			CHECK(cJSON_IsArray(k) && cJSON_GetArraySize(k) == 0);
			/* The reason, less a character cut off at its end. */
			CHECK(cJSON_IsString(r) &&
			    strncmp(r->valuestring, c->reason,
			    strlen(r->valuestring)) == 0 &&
			    strlen(c->reason) - strlen(r->valuestring) < 4);
			CHECK(cJSON_IsNumber(ts) &&
			    ts->valuedouble == (double)c->ts);
			CHECK(cJSON_GetObjectItemCaseSensitive(root, "old") == NULL);
			CHECK(cJSON_GetObjectItemCaseSensitive(root, "new") == NULL);
			cJSON_Delete(root);
		}
		buf_free(&body);
		buf_free(&msg);
	}
	t_done();
}

/* The encoders append: bodies and frames can follow other data. */
static void
test_append(void **state)
{
	struct buf b = { 0 };
	struct event ev;

	memset(&ev, 0, sizeof(ev));
	ev.op = EVENT_TRUNCATE;
	ev.table = "a.b";
	ev.ts = 3;
	buf_adds(&b, "X");
	message_body_event(&b, &ev, NULL);
	assert_string_equal(b.data, "X\"op\":\"truncate\",\"table\":\"a.b\","
	    "\"keys\":[],\"ts\":3}");
	buf_reset(&b);
	buf_adds(&b, "Y");
	message_body_reset(&b, NULL, "r", 4);
	assert_string_equal(b.data, "Y\"op\":\"reset\",\"table\":null,"
	    "\"keys\":[],\"ts\":4,\"reason\":\"r\"}");
	buf_reset(&b);
	buf_adds(&b, "Z");
	message_frame(&b, 5, "ep", "\"op\":\"x\"}", 9);
	assert_string_equal(b.data, "Z{\"v\":1,\"seq\":5,\"epoch\":\"ep\","
	    "\"op\":\"x\"}");
	/* Only len bytes of the body are used. */
	buf_reset(&b);
	message_frame(&b, 6, "ep", "\"op\":\"y\"}garbage", 9);
	assert_string_equal(b.data, "{\"v\":1,\"seq\":6,\"epoch\":\"ep\","
	    "\"op\":\"y\"}");
	buf_free(&b);
}

/* A decoded payload makes a message that carries the same values. */
static void
test_decoded_roundtrip(void **state)
{
	static const char payload[] = "{\"v\":1,\"t\":\"public.users\","
	    "\"op\":\"update\",\"ts\":1764240000123456,\"x\":1,"
	    "\"o\":{\"id\":\"42\",\"bio\":\"a\\\"b\\\\c\\nd\\u0001\\u00e9\","
	    "\"n\":null},\"n\":{\"id\":\"42\",\"bio\":\"\\\\u0000\",\"n\":7}}";
	struct event ev;
	struct buf body = { 0 }, msg = { 0 };
	char err[128];
	cJSON *root;
	const cJSON *o, *n;

	assert_int_equal(decode_event(payload, strlen(payload), &ev, err,
	    sizeof(err)), DECODE_OK);
	message_body_event(&body, &ev, NULL);
	message_frame(&msg, 1, EPOCH, body.data, body.len);
	assert_string_equal(msg.data, "{\"v\":1,\"seq\":1,\"epoch\":\"" EPOCH
	    "\",\"op\":\"update\",\"table\":\"public.users\",\"keys\":[],"
	    "\"ts\":1764240000123456,"
	    "\"old\":{\"id\":\"42\",\"bio\":\"a\\\"b\\\\c\\nd\\u0001\xc3\xa9\","
	    "\"n\":null},\"new\":{\"id\":\"42\",\"bio\":\"\\\\u0000\","
	    "\"n\":\"7\"}}");
	root = cJSON_Parse(msg.data);
	assert_non_null(root);
	o = cJSON_GetObjectItemCaseSensitive(root, "old");
	n = cJSON_GetObjectItemCaseSensitive(root, "new");
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(o, "bio")->valuestring,
	    "a\"b\\c\nd\001\xc3\xa9");
	assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "n")));
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(n, "bio")->valuestring,
	    "\\u0000");
	cJSON_Delete(root);
	buf_free(&body);
	buf_free(&msg);
	decode_event_free(&ev);
}

/* A payload about several rows makes one message with their keys and a
 * "rows" list; merged messages use the same body. */
static void
test_rows_message(void **state)
{
	static const char payload[] = "{\"v\":1,\"t\":\"public.users\","
	    "\"op\":\"delete\",\"ts\":5,\"rows\":[{\"o\":{\"id\":\"1\"}},"
	    "{\"o\":{\"id\":\"2\"}}]}";
	struct event ev;
	struct keys keys = { 0 };
	struct buf body = { 0 }, rows = { 0 };
	char err[128];

	(void)state;
	assert_int_equal(decode_event(payload, strlen(payload), &ev, err,
	    sizeof(err)), DECODE_OK);
	keys_add(&keys, "u:1", 3);
	keys_add(&keys, "u:2", 3);
	message_body_event(&body, &ev, &keys);
	assert_string_equal(body.data, "\"op\":\"delete\",\"table\":"
	    "\"public.users\",\"keys\":[\"u:1\",\"u:2\"],\"ts\":5,"
	    "\"rows\":[{\"old\":{\"id\":\"1\"}},{\"old\":{\"id\":\"2\"}}]}");
	assert_int_equal(message_rows(&rows, &ev), 2);
	buf_reset(&body);
	/* One row at the top level; none (a truncate) adds nothing. */
	message_body_rows(&body, "delete", "a.b", NULL, 1, "{\"old\":{}}", 10, 1);
	assert_string_equal(body.data, "\"op\":\"delete\",\"table\":\"a.b\","
	    "\"keys\":[],\"ts\":1,\"old\":{}}");
	buf_reset(&body);
	message_body_rows(&body, "truncate", "a.b", NULL, 1, "", 0, 0);
	assert_string_equal(body.data, "\"op\":\"truncate\",\"table\":\"a.b\","
	    "\"keys\":[],\"ts\":1}");
	keys_free(&keys);
	buf_free(&body);
	buf_free(&rows);
	decode_event_free(&ev);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rows_message),
		cmocka_unit_test(test_event_messages),
		cmocka_unit_test(test_all_control_chars),
		cmocka_unit_test(test_reset_messages),
		cmocka_unit_test(test_append),
		cmocka_unit_test(test_decoded_roundtrip),
	};

	return cmocka_run_group_tests_name("message", tests, NULL, NULL);
}
