/*
 * Unit tests for daemon/core/message.c: the exact bytes of event and reset
 * messages, JSON escaping, that every message reads back, the messages
 * message_parse() accepts and refuses, and the gap rules.
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

#include "../../daemon/lib/buf.h"
#include "../../daemon/core/decode.h"
#include "../../daemon/core/message.h"
#include "../../daemon/core/rules.h"

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

/* The image read back matches the one sent. */
static void
check_image(const struct message_image *got, const char *which,
    const struct img *img)
{
	size_t n = 0;

	if (!img->present) {
		if (got->present)
			t_fail(__LINE__, "\"%s\" should be absent", which);
		return;
	}
	if (!got->present) {
		t_fail(__LINE__, "\"%s\" is not an object", which);
		return;
	}
	for (; n < MAXC && img->cols[n].name != NULL; n++) {
		const struct kv *kv = &img->cols[n];

		if (n >= got->n) {
			t_fail(__LINE__, "%s.%s is missing", which, kv->name);
			return;
		}
		CHECK_STR(got->cols[n].name, kv->name);
		CHECK_STR(got->cols[n].val, kv->val);
		if (kv->val != NULL)
			CHECK_INT(got->cols[n].len, strlen(kv->val));
	}
	if (got->n != n)
		t_fail(__LINE__, "\"%s\" has %zu members, want %zu", which,
		    got->n, n);
}

/* Reads a whole message into m: one JSON object, nothing after it. */
static bool
parse_message(struct message *m, const struct buf *msg)
{
	char err[128];

	if (msg->len == 0 || strlen(msg->data) != msg->len) {
		t_fail(__LINE__, "message holds a NUL byte");
		return false;
	}
	if (message_parse(m, msg->data, msg->len, err, sizeof(err)) == -1) {
		t_fail(__LINE__, "does not read back: %s", err);
		return false;
	}
	if (m->end != msg->len) {
		t_fail(__LINE__, "text after the message, from byte %zu", m->end);
		return false;
	}
	return true;
}

/* The seq a message reads back with: 0 when out of range. */
static uint64_t
seq_read(uint64_t seq)
{
	return seq >= 1 && (double)seq <= MESSAGE_SEQ_MAX ? seq : 0;
}

static void
check_envelope(const struct buf *msg, const struct message *m, uint64_t seq,
    const char *epoch, const char *op)
{
	CHECK(strncmp(msg->data, "{\"v\":1,", 7) == 0);
	CHECK_INT(m->seq, seq_read(seq));
	CHECK_STR(m->epoch, epoch);
	CHECK_STR(m->op, op);
}

/* A ts reads back when in [0, MESSAGE_TS_MAX]. */
static void
check_ts(const struct message *m, int64_t ts)
{
	bool in = ts >= 0 && (double)ts <= MESSAGE_TS_MAX;

	CHECK(m->has_ts == in);
	CHECK_INT(m->ts, in ? ts : 0);
}

static void
test_event_messages(void **state)
{
	for (size_t i = 0; i < sizeof(event_cases) / sizeof(event_cases[0]); i++) {
		const struct event_case *c = &event_cases[i];
		struct event ev;
		struct keys keys = { 0 };
		struct buf body = { 0 }, msg = { 0 };
		struct message m = { 0 };
		size_t nkeys = 0;

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

		if (parse_message(&m, &msg)) {
			check_envelope(&msg, &m, c->seq, c->epoch,
			    event_op_name(c->op));
			CHECK_STR(m.table, c->table);
			check_ts(&m, c->ts);
			CHECK(m.keys_array);
			CHECK_INT(m.nkeys, nkeys);
			/* A string ends at a NUL, as C sees it. */
			for (size_t j = 0; j < nkeys && j < m.nkeys; j++)
				CHECK_STR(m.keys[j].s, c->keys[j].s);
			check_image(&m.old, "old", &c->old);
			check_image(&m.new, "new", &c->new);
			CHECK_INT(m.nrows, 0);
			CHECK(m.reason == NULL);
		}

		/* A NULL key list is an empty one. */
		if (nkeys == 0) {
			struct buf b2 = { 0 };

			message_body_event(&b2, &ev, NULL);
			t_check_mem(__LINE__, "body with NULL keys", b2.data,
			    b2.len, body.data, body.len);
			buf_free(&b2);
		}
		message_free(&m);
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
	struct message m = { 0 };
	char val[0x21], err[128];

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
	assert_int_equal(message_parse(&m, msg.data, msg.len, err, sizeof(err)),
	    0);
	assert_int_equal(m.new.n, 1);
	assert_string_equal(m.new.cols[0].val, val);
	message_free(&m);
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
		struct message m = { 0 };

		tcase = c->name;
		message_body_reset(&body, c->table, c->reason, c->ts);
		message_frame(&msg, c->seq, EPOCH, body.data, body.len);
		t_check_mem(__LINE__, "message", msg.data, msg.len, c->want,
		    strlen(c->want));
		if (parse_message(&m, &msg)) {
			check_envelope(&msg, &m, c->seq, EPOCH, "reset");
			CHECK_STR(m.table, c->table);
			CHECK(m.keys_array && m.nkeys == 0);
			/* The reason, less a character cut off at its end. */
			CHECK(m.reason != NULL && strncmp(m.reason, c->reason,
			    strlen(m.reason)) == 0 &&
			    strlen(c->reason) - strlen(m.reason) < 4);
			check_ts(&m, c->ts);
			CHECK(!m.old.present && !m.new.present);
		}
		message_free(&m);
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
	struct message m = { 0 };
	char err[128];

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
	assert_int_equal(message_parse(&m, msg.data, msg.len, err, sizeof(err)),
	    0);
	assert_int_equal(m.old.n, 3);
	assert_string_equal(m.old.cols[1].name, "bio");
	assert_string_equal(m.old.cols[1].val, "a\"b\\c\nd\001\xc3\xa9");
	assert_null(m.old.cols[2].val);
	assert_int_equal(m.new.n, 3);
	assert_string_equal(m.new.cols[1].val, "\\u0000");
	assert_string_equal(m.new.cols[2].val, "7");
	message_free(&m);
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
	struct buf body = { 0 }, rows = { 0 }, msg = { 0 };
	struct message m = { 0 };
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
	/* Read back: the rows in order, no images at the top. */
	message_frame(&msg, 3, "e", body.data, body.len);
	assert_int_equal(message_parse(&m, msg.data, msg.len, err,
	    sizeof(err)), 0);
	assert_int_equal(m.nrows, 2);
	assert_false(m.old.present || m.new.present);
	assert_true(m.rows[1].old.present && !m.rows[1].new.present);
	assert_int_equal(m.rows[1].old.n, 1);
	assert_string_equal(m.rows[1].old.cols[0].val, "2");
	message_free(&m);
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
	buf_free(&msg);
	decode_event_free(&ev);
}

/* An update whose images are equal writes the new one as a copy of the
 * old one's text: the same bytes as escaping it again. */
static void
test_update_images(void **state)
{
	static const struct {
		const char *name, *o, *n, *want;
	} cases[] = {
		{ "equal", "{\"id\":\"1\",\"e\":\"a\\\"\\n\",\"z\":null}",
		    "{\"id\":\"1\",\"e\":\"a\\\"\\n\",\"z\":null}",
		    "{\"old\":{\"id\":\"1\",\"e\":\"a\\\"\\n\",\"z\":null},"
		    "\"new\":{\"id\":\"1\",\"e\":\"a\\\"\\n\",\"z\":null}}" },
		{ "null and empty", "{\"e\":null}", "{\"e\":\"\"}",
		    "{\"old\":{\"e\":null},\"new\":{\"e\":\"\"}}" },
		{ "empty and null", "{\"e\":\"\"}", "{\"e\":null}",
		    "{\"old\":{\"e\":\"\"},\"new\":{\"e\":null}}" },
		{ "other value, same length", "{\"e\":\"ab\"}", "{\"e\":\"ac\"}",
		    "{\"old\":{\"e\":\"ab\"},\"new\":{\"e\":\"ac\"}}" },
		{ "other name", "{\"a\":\"1\"}", "{\"b\":\"1\"}",
		    "{\"old\":{\"a\":\"1\"},\"new\":{\"b\":\"1\"}}" },
		{ "fewer columns", "{\"a\":\"1\",\"b\":\"2\"}", "{\"a\":\"1\"}",
		    "{\"old\":{\"a\":\"1\",\"b\":\"2\"},\"new\":{\"a\":\"1\"}}" },
		{ "both empty", "{}", "{}", "{\"old\":{},\"new\":{}}" },
	};
	char payload[512], err[128];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct event ev;
		struct buf rows = { 0 };

		snprintf(payload, sizeof(payload), "{\"v\":1,\"t\":\"a.b\","
		    "\"op\":\"update\",\"ts\":1,\"o\":%s,\"n\":%s}", cases[i].o,
		    cases[i].n);
		assert_int_equal(decode_event(payload, strlen(payload), &ev, err,
		    sizeof(err)), DECODE_OK);
		assert_int_equal(message_rows(&rows, &ev), 1);
		if (strcmp(rows.data, cases[i].want) != 0)
			fail_msg("%s: got %s, want %s", cases[i].name, rows.data,
			    cases[i].want);
		buf_free(&rows);
		decode_event_free(&ev);
	}
}

/* ------------------------------------------------------------------ */

/* What message_parse() read, in one line: the members found, in a fixed
 * order ("keys=-" when "keys" is not an array), and where the reading
 * stopped, when before the end. */
static void
describe_image(struct buf *b, const char *name, const struct message_image *img)
{
	if (!img->present)
		return;
	buf_adds(b, name);
	buf_addc(b, '{');
	for (size_t i = 0; i < img->n; i++) {
		buf_adds(b, i ? "," : "");
		buf_adds(b, img->cols[i].name);
		buf_addc(b, ':');
		buf_adds(b, img->cols[i].val ? img->cols[i].val : "null");
	}
	buf_adds(b, "} ");
}

static void
describe(struct buf *b, const struct message *m, size_t len)
{
	char num[64];

	if (m->seq != 0) {
		snprintf(num, sizeof(num), "seq=%llu ", (unsigned long long)m->seq);
		buf_adds(b, num);
	}
	const char *strs[][2] = { { "epoch", m->epoch }, { "op", m->op },
	    { "table", m->table }, { "reason", m->reason } };
	for (size_t i = 0; i < 4; i++) {
		if (strs[i][1] == NULL)
			continue;
		buf_adds(b, strs[i][0]);
		buf_addc(b, '=');
		buf_adds(b, strs[i][1]);
		buf_addc(b, ' ');
	}
	if (m->has_ts) {
		snprintf(num, sizeof(num), "ts=%lld ", (long long)m->ts);
		buf_adds(b, num);
	}
	buf_adds(b, m->keys_array ? "keys=[" : "keys=-");
	for (size_t i = 0; m->keys_array && i < m->nkeys; i++) {
		buf_adds(b, i ? "," : "");
		buf_add(b, m->keys[i].s, m->keys[i].len);
	}
	buf_adds(b, m->keys_array ? "] " : " ");
	describe_image(b, "old", &m->old);
	describe_image(b, "new", &m->new);
	for (size_t i = 0; i < m->nrows; i++) {
		buf_adds(b, "row ");
		describe_image(b, "old", &m->rows[i].old);
		describe_image(b, "new", &m->rows[i].new);
	}
	if (m->end != len) {
		snprintf(num, sizeof(num), "end=%zu ", m->end);
		buf_adds(b, num);
	}
	if (b->len > 0)
		b->data[--b->len] = '\0';	/* the last space */
}

struct parse_case {
	const char *name;
	const char *text;
	size_t len;		/* 0: strlen(text) */
	const char *want;	/* describe(), or the error of a refusal */
	bool refused;
};

#define OK(name, text, want) { name, text, 0, want, false }
#define OKN(name, text, len, want) { name, text, len, want, false }
#define NO(name, text, err) { name, text, 0, err, true }
#define NON(name, text, len, err) { name, text, len, err, true }
#define HEAD "{\"v\":1,\"seq\":7,\"epoch\":\"e\","

static const struct parse_case parse_cases[] = {
	/* What the daemon sends. */
	OK("an update", HEAD "\"op\":\"update\",\"table\":\"public.users\","
	    "\"keys\":[\"user:42\",\"user:email:a@x\"],\"ts\":1764240000123456,"
	    "\"old\":{\"id\":\"42\",\"email\":null},\"new\":{\"id\":\"42\"}}",
	    "seq=7 epoch=e op=update table=public.users ts=1764240000123456 "
	    "keys=[user:42,user:email:a@x] old{id:42,email:null} new{id:42}"),
	OK("a reset of everything", HEAD "\"op\":\"reset\",\"table\":null,"
	    "\"keys\":[],\"ts\":1,\"reason\":\"start: unknown\"}",
	    "seq=7 epoch=e op=reset reason=start: unknown ts=1 keys=[]"),
	OK("merged rows", HEAD "\"op\":\"delete\",\"table\":\"a.b\",\"keys\":"
	    "[\"k:1\"],\"ts\":5,\"rows\":[{\"old\":{\"id\":\"1\"}},"
	    "{\"old\":{\"id\":\"2\"},\"new\":{}}]}",
	    "seq=7 epoch=e op=delete table=a.b ts=5 keys=[k:1] "
	    "row old{id:1} row old{id:2} new{}"),
	OK("members in any order", "{\"keys\":[\"k\"],\"op\":\"insert\","
	    "\"epoch\":\"e\",\"seq\":1,\"v\":1}", "seq=1 epoch=e op=insert keys=[k]"),
	/* Around the JSON value. */
	OK("blanks, a byte order mark and a NUL are skipped",
	    "\xef\xbb\xbf \t\r\n\001{\"seq\":2 , \"epoch\" :\"e\"}\n ",
	    "seq=2 epoch=e keys=-"),
	OKN("a NUL before the object is a blank", "\0{\"seq\":3}", 11,
	    "seq=3 keys=-"),
	OK("text after the object is not read", "{\"seq\":4}{\"seq\":5} x",
	    "seq=4 keys=- end=9"),
	OK("a byte order mark before a short text", "\xef\xbb\xbf" "12",
	    "keys=-"),
	OK("an array is a message without members", "[1,{\"seq\":1}]",
	    "keys=-"),
	OK("a string is a message without members", "\"seq\"", "keys=-"),
	OK("a number is a message without members", "12", "keys=-"),
	/* seq and ts are refused out of range, before they are converted. */
	OK("seq 0", "{\"seq\":0}", "keys=-"),
	OK("negative seq", "{\"seq\":-5}", "keys=-"),
	OK("seq at the limit", "{\"seq\":9000000000000000}",
	    "seq=9000000000000000 keys=-"),
	OK("seq past the limit", "{\"seq\":9000000000000001}", "keys=-"),
	OK("seq 1e30", "{\"seq\":1e30}", "keys=-"),
	OK("seq 1e999", "{\"seq\":1e999}", "keys=-"),
	OK("a fraction of a seq is cut off", "{\"seq\":2.9}", "seq=2 keys=-"),
	OK("seq as a string", "{\"seq\":\"7\"}", "keys=-"),
	OK("ts 0", "{\"ts\":0}", "ts=0 keys=-"),
	OK("negative ts", "{\"ts\":-1}", "keys=-"),
	OK("ts at the limit", "{\"ts\":9.2e18}", "ts=9200000000000000000 keys=-"),
	OK("ts 1e999", "{\"ts\":1e999}", "keys=-"),
	OK("ts as a string", "{\"ts\":\"1\"}", "keys=-"),
	/* Members of the wrong type read as absent; the first of a name
	 * counts. */
	OK("wrong types", "{\"epoch\":1,\"op\":[\"x\"],\"table\":5,"
	    "\"reason\":{},\"keys\":\"k\",\"old\":\"o\",\"new\":null,"
	    "\"rows\":{}}", "keys=-"),
	OK("the first seq counts", "{\"seq\":\"x\",\"seq\":5}", "keys=-"),
	OK("the first keys count", "{\"keys\":5,\"keys\":[\"a\"]}", "keys=-"),
	OK("the first op counts", "{\"op\":\"a\",\"op\":\"b\"}", "op=a keys=-"),
	OK("keys: only strings count", "{\"keys\":[\"a\",1,null,[\"b\"],"
	    "{\"c\":\"d\"},true,\"e\"]}", "keys=[a,e]"),
	OK("images: only strings and null count", "{\"old\":{\"a\":1,"
	    "\"b\":\"x\",\"c\":[],\"d\":null,\"b\":\"y\"}}",
	    "keys=- old{b:x,d:null,b:y}"),
	OK("rows: a non-object is a row without images",
	    "{\"rows\":[1,{\"new\":{\"a\":\"1\"},\"new\":{\"b\":\"2\"}},{}]}",
	    "keys=- row row new{a:1} row"),
	OK("unknown members are skipped, however deep",
	    "{\"x\":[[[{\"seq\":9}]]],\"y\":{\"op\":\"a\"},\"seq\":8}",
	    "seq=8 keys=-"),
	/* Strings. */
	OK("escapes", "{\"op\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"}",
	    "op=\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80 keys=-"),
	OK("a NUL ends a string, as C sees it", "{\"keys\":[\"a\\u0000b\"],"
	    "\"op\":\"res\\u0000et\"}", "op=res keys=[a]"),
	OK("a NUL in a name ends it", "{\"seq\\u0000x\":3}", "seq=3 keys=-"),
	OK("raw control characters in strings",
	    "{\"op\":\"insert\x1b[2J\",\"table\":\"t\x07\"}",
	    "op=insert\x1b[2J table=t\x07 keys=-"),
	OK("bytes that are not UTF-8", "{\"keys\":[\"\xff\x9b\"]}",
	    "keys=[\xff\x9b]"),
	OK("a leading zero", "{\"seq\":01}", "seq=1 keys=-"),
	/* Not JSON. */
	NO("empty", "", "not JSON: empty"),
	NO("blanks only", " \n", "not JSON: bad syntax near byte 2"),
	NO("text", "not json", "not JSON: bad syntax near byte 0"),
	NO("cut short", "{\"seq\":1", "not JSON: bad syntax near byte 8"),
	NO("a comma before the end", "{\"seq\":1,}",
	    "not JSON: bad syntax near byte 9"),
	NO("single quotes", "{'seq':1}", "not JSON: bad syntax near byte 1"),
	NO("no colon", "{\"seq\" 1}", "not JSON: bad syntax near byte 7"),
	NO("a plus sign", "{\"seq\":+1}", "not JSON: bad syntax near byte 7"),
	NO("NaN", "{\"seq\":NaN}", "not JSON: bad syntax near byte 7"),
	NO("a bad escape", "{\"op\":\"\\x\"}", "not JSON: bad syntax near byte 6"),
	NO("a bad hex digit", "{\"op\":\"\\u00zz\"}",
	    "not JSON: bad syntax near byte 6"),
	NO("a lone low surrogate", "{\"op\":\"\\udc00\"}",
	    "not JSON: bad syntax near byte 6"),
	NO("a bad key in the keys", "{\"keys\":[\"a\",tru]}",
	    "not JSON: bad syntax near byte 13"),
	NO("a byte order mark is skipped only before more than one byte",
	    "\xef\xbb\xbf" "1", "not JSON: bad syntax near byte 0"),
	NO("a bad row", "{\"rows\":[{\"old\":{\"a\":}}]}",
	    "not JSON: bad syntax near byte 21"),
	NON("the closing quote is past len", "{\"op\":\"x\"}", 8,
	    "not JSON: bad syntax near byte 6"),
	NON("the closing brace is past len", "{\"op\":\"x\"}", 9,
	    "not JSON: bad syntax near byte 9"),
};

/* s nested n deep in arrays, under "x", into a new string. */
static char *
nested(size_t n, const char *s)
{
	struct buf b = { 0 };

	buf_adds(&b, "{\"seq\":1,\"x\":");
	for (size_t i = 0; i < n; i++)
		buf_addc(&b, '[');
	buf_adds(&b, s);
	for (size_t i = 0; i < n; i++)
		buf_addc(&b, ']');
	buf_addc(&b, '}');
	return buf_steal(&b);
}

static void
test_parse(void **state)
{
	struct message m = { 0 };

	(void)state;
	for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		const struct parse_case *c = &parse_cases[i];
		size_t len = c->len ? c->len : strlen(c->text);
		/* Exactly len bytes, no terminator: a read past len is
		 * caught by the sanitizers. */
		char *text = malloc(len ? len : 1), err[128];
		struct buf got = { 0 };
		int r;

		assert_non_null(text);
		memcpy(text, c->text, len);
		tcase = c->name;
		memset(err, 'x', sizeof(err));
		r = message_parse(&m, text, len, err, sizeof(err));
		if (c->refused) {
			CHECK_INT(r, -1);
			if (r == -1)
				CHECK_STR(err, c->want);
			/* A refused message has no members. */
			CHECK(m.seq == 0 && m.epoch == NULL && m.op == NULL &&
			    !m.keys_array && m.nkeys == 0 && m.nrows == 0);
		} else if (r == -1) {
			t_fail(__LINE__, "refused: %s", err);
		} else {
			describe(&got, &m, len);
			t_check_mem(__LINE__, "message", got.data, got.len,
			    c->want, strlen(c->want));
		}
		buf_free(&got);
		free(text);
	}
	message_free(&m);
	t_done();
}

/* Nesting: as deep as 1000 arrays and objects in all, no deeper. */
static void
test_parse_depth(void **state)
{
	struct message m = { 0 };
	char err[128], *ok = nested(999, "1"), *deep = nested(1000, "1");

	(void)state;
	assert_int_equal(message_parse(&m, ok, strlen(ok), err, sizeof(err)), 0);
	assert_int_equal(m.seq, 1);
	assert_int_equal(message_parse(&m, deep, strlen(deep), err, sizeof(err)),
	    -1);
	assert_int_equal(m.seq, 0);
	message_free(&m);
	free(ok);
	free(deep);
}

/* One struct read into again and again: nothing of a message stays. */
static void
test_parse_reuse(void **state)
{
	static const char big[] = HEAD "\"op\":\"update\",\"table\":\"a.b\","
	    "\"keys\":[\"k1\",\"k2\",\"k3\",\"k4\",\"k5\",\"k6\",\"k7\",\"k8\","
	    "\"k9\"],\"ts\":3,\"reason\":\"r\",\"rows\":[{\"old\":{\"a\":\"1\"}},"
	    "{\"new\":{\"a\":\"2\",\"b\":\"3\"}}]}";
	static const char small[] = "{\"new\":{\"c\":\"4\"},\"keys\":[\"z\"]}";
	struct message m = { 0 };
	struct buf got = { 0 };
	char err[128];

	(void)state;
	for (int round = 0; round < 3; round++) {
		assert_int_equal(message_parse(&m, big, strlen(big), err,
		    sizeof(err)), 0);
		assert_int_equal(message_parse(&m, small, strlen(small), err,
		    sizeof(err)), 0);
		buf_reset(&got);
		describe(&got, &m, strlen(small));
		assert_string_equal(got.data, "keys=[z] new{c:4}");
	}
	message_free(&m);
	/* Freed, it is as new. */
	assert_int_equal(message_parse(&m, big, strlen(big), err, sizeof(err)),
	    0);
	assert_int_equal(m.nkeys, 9);
	assert_int_equal(m.nrows, 2);
	assert_string_equal(m.rows[1].new.cols[1].val, "3");
	message_free(&m);
	buf_free(&got);
}

/* ------------------------------------------------------------------ */

static void
test_seq_gaps(void **state)
{
	static const struct {
		const char *epoch;
		uint64_t seq;
		enum message_gap want;
	} steps[] = {
		{ "e1", 5, MESSAGE_GAP_NONE },	/* first after subscribing */
		{ "e1", 6, MESSAGE_GAP_NONE },
		{ "e1", 8, MESSAGE_GAP_SEQ },
		{ "e1", 9, MESSAGE_GAP_NONE },
		{ "e1", 9, MESSAGE_GAP_REPEAT },	/* a repeat is not last + 1 */
		{ "e1", 3, MESSAGE_GAP_REPEAT },
		{ "e1", 4, MESSAGE_GAP_NONE },	/* it was recorded */
		{ "e2", 1, MESSAGE_GAP_NONE },	/* a new run starts at 1 */
		{ "e2", 2, MESSAGE_GAP_NONE },
		{ "e3", 4, MESSAGE_GAP_EPOCH },
		{ "e3", 5, MESSAGE_GAP_NONE },
	};
	struct message_seq s = { { 0 }, 0 };

	(void)state;
	tfails = 0;
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		enum message_gap test = message_seq_test(&s, steps[i].epoch,
		    steps[i].seq);
		enum message_gap got = message_seq_check(&s, steps[i].epoch,
		    steps[i].seq);

		tcase = steps[i].epoch;
		if (got != steps[i].want || test != got)
			t_fail(__LINE__, "step %zu (seq %llu): gap %d (tested %d), "
			    "want %d", i, (unsigned long long)steps[i].seq, got,
			    test, steps[i].want);
		if (s.last != steps[i].seq || strcmp(s.epoch, steps[i].epoch) != 0)
			t_fail(__LINE__, "step %zu was not recorded", i);
	}
	/* Testing records nothing. */
	tcase = "test";
	CHECK(message_seq_test(&s, "e3", 9) == MESSAGE_GAP_SEQ);
	CHECK(message_seq_test(&s, "e3", 6) == MESSAGE_GAP_NONE);
	CHECK_INT(s.last, 5);
	message_seq_forget(&s);
	tcase = "after forget";
	CHECK(message_seq_test(&s, "e9", 7) == MESSAGE_GAP_NONE);
	CHECK(message_seq_check(&s, "e9", 7) == MESSAGE_GAP_NONE);
	t_done();
}

/* Only a message with an epoch and a seq in range has a place. */
static void
test_has_seq(void **state)
{
	struct message m = { 0 };
	char err[128];

	(void)state;
	assert_int_equal(message_parse(&m, "{\"seq\":1,\"epoch\":\"e\"}", 22,
	    err, sizeof(err)), 0);
	assert_true(message_has_seq(&m));
	assert_int_equal(message_parse(&m, "{\"seq\":1,\"epoch\":7}", 19, err,
	    sizeof(err)), 0);
	assert_false(message_has_seq(&m));
	assert_int_equal(message_parse(&m, "{\"seq\":0,\"epoch\":\"e\"}", 22,
	    err, sizeof(err)), 0);
	assert_false(message_has_seq(&m));
	message_free(&m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rows_message),
		cmocka_unit_test(test_update_images),
		cmocka_unit_test(test_event_messages),
		cmocka_unit_test(test_all_control_chars),
		cmocka_unit_test(test_reset_messages),
		cmocka_unit_test(test_append),
		cmocka_unit_test(test_decoded_roundtrip),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_parse_depth),
		cmocka_unit_test(test_parse_reuse),
		cmocka_unit_test(test_seq_gaps),
		cmocka_unit_test(test_has_seq),
	};

	return cmocka_run_group_tests_name("message", tests, NULL, NULL);
}
