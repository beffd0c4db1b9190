/*
 * Unit tests for daemon/core/wal_rel.c: the texts pgoutput and to_jsonb()
 * give the same values on a real server (pgoutput_real.h), the rules that
 * decide whether a change's watched values can be known, and the real
 * messages of a PostgreSQL 15 session turned into events.
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

#include "../../daemon/core/pgoutput.h"
#include "../../daemon/core/wal_rel.h"

#include "tcheck.h"
#include "pgo_build.h"
#include "pgoutput_real.h"

static const char *const result_names[] = { "OK", "STALE", "UNKNOWN",
	"BAD" };

/* "id=1|email|seen=2024-01-02T03:04:05+00:00": an image, a NULL value
 * without "=", a long one as "<2240 c4ca4238>"; NULL when absent. */
static const char *
image_str(char *out, size_t size, const struct row_image *img)
{
	size_t n = 0;

	out[0] = '\0';
	if (!img->present)
		return NULL;
	for (size_t i = 0; i < img->n && n < size; i++) {
		const struct row_col *c = &img->cols[i];

		n += (size_t)snprintf(out + n, size - n, "%s%s", i ? "|" : "",
		    c->name);
		if (n >= size)
			break;
		if (c->val != NULL && c->len > 40)
			n += (size_t)snprintf(out + n, size - n, "=<%zu %.8s>",
			    c->len, c->val);
		else if (c->val != NULL)
			n += (size_t)snprintf(out + n, size - n, "=%.*s",
			    (int)c->len, c->val);
		if (c->val != NULL && c->val[c->len] != '\0')
			t_fail(__LINE__, "value of %s not NUL-terminated",
			    c->name);
	}
	return out;
}

static void
check_image(int line, const char *what, const struct row_image *img,
    const char *want)
{
	char got[1024];

	image_str(got, sizeof(got), img);
	if (img->present != (want != NULL) ||
	    (want != NULL && strcmp(got, want) != 0))
		t_fail(line, "%s image: got %s%s%s, want %s%s%s", what,
		    img->present ? "\"" : "", img->present ? got : "(none)",
		    img->present ? "\"" : "", want ? "\"" : "",
		    want ? want : "(none)", want ? "\"" : "");
}

/* Parses a built message, which must parse. */
static void
parse(const struct pb_msg *b, struct pgo_msg *m)
{
	char err[256];

	if (pgo_parse(b->b, b->n, m, err, sizeof(err)) != 0)
		fail_msg("%s: a built message does not parse: %s", tcase, err);
}

static void
test_class_parse(void **state)
{
	assert_int_equal(wal_class_parse("text"), WAL_CLASS_TEXT);
	assert_int_equal(wal_class_parse("bool"), WAL_CLASS_BOOL);
	assert_int_equal(wal_class_parse("timestamp"), WAL_CLASS_TIMESTAMP);
	assert_int_equal(wal_class_parse("timestamptz"), WAL_CLASS_TIMESTAMPTZ);
	assert_int_equal(wal_class_parse("timetz"), WAL_CLASS_TIMETZ);
	assert_int_equal(wal_class_parse("json"), WAL_CLASS_UNSUPPORTED);
	assert_int_equal(wal_class_parse("Text"), WAL_CLASS_UNSUPPORTED);
	assert_int_equal(wal_class_parse(""), WAL_CLASS_UNSUPPORTED);
	assert_int_equal(wal_class_parse(NULL), WAL_CLASS_UNSUPPORTED);
}

/* ------------------------------------------------------------------ */
/* Texts: one watched column "v" of public.t, inserted. */

static const char *
insert_text(struct wal_rels *rels, enum wal_class cls, const char *text,
    char *why, size_t whylen)
{
	static const struct pb_col cols[] = { { "id", 23, true },
	    { "v", 1, false }, { NULL, 0, false } };
	struct pb_val vals[] = { PB_T("1"), PB_T(text), { 0, NULL } };
	struct pb_msg b;
	struct pgo_msg m;
	struct event ev;
	char err[256];

	wal_rels_clear(rels);
	wal_rels_watch(rels, 100, "v", 1, cls);
	pb_relation(&b, 100, "public", "t", 'd', cols);
	parse(&b, &m);
	if (wal_rels_relation(rels, &m, err, sizeof(err)) != 0)
		fail_msg("relation: %s", err);
	pb_change(&b, 'I', 100, 0, NULL, vals);
	parse(&b, &m);
	if (wal_rels_event(rels, &m, 0, &ev, why, whylen) != WAL_EVENT_OK)
		return NULL;
	if (ev.new.n != 1 || ev.new.cols[0].val == NULL ||
	    strlen(ev.new.cols[0].val) != ev.new.cols[0].len)
		fail_msg("%s: %zu columns", tcase, ev.new.n);
	return ev.new.cols[0].val;
}

/* What a PostgreSQL 15 server sent and what its to_jsonb() gave, for the
 * same values, under four TimeZone settings. */
static void
test_real_pairs(void **state)
{
	struct wal_rels *rels = wal_rels_new();
	char name[256], why[256];

	for (size_t i = 0; i < sizeof(real_pairs) / sizeof(*real_pairs); i++) {
		const struct real_pair *p = &real_pairs[i];
		const char *got;

		snprintf(name, sizeof(name), "%s %s in %s", p->type, p->wal,
		    p->zone);
		tcase = name;
		got = insert_text(rels, p->cls, p->wal, why, sizeof(why));
		if (got == NULL || strcmp(got, p->json) != 0)
			t_fail(__LINE__, "got \"%s\", want \"%s\"",
			    got ? got : why, p->json);
	}
	wal_rels_free(rels);
	t_done();
}

struct text_case {
	enum wal_class cls;
	const char *wal, *json;		/* json NULL: the value is unknown */
};

/* Texts beyond those of the server, and what is left alone. */
static const struct text_case text_cases[] = {
	{ WAL_CLASS_TIMESTAMPTZ, "2024-01-02 03:04:05-05",
	    "2024-01-02T03:04:05-05:00" },
	{ WAL_CLASS_TIMESTAMPTZ, "2024-01-02 03:04:05.000001-11 BC",
	    "2024-01-02T03:04:05.000001-11:00 BC" },
	{ WAL_CLASS_TIMESTAMPTZ, "2024-01-02 03:04:05+14:00",
	    "2024-01-02T03:04:05+14:00" },
	{ WAL_CLASS_TIMESTAMPTZ, "2024-01-02 03:04:05", "2024-01-02T03:04:05" },
	{ WAL_CLASS_TIMESTAMPTZ, "2024-01-02 03:04:05+1",
	    "2024-01-02T03:04:05+1" },
	{ WAL_CLASS_TIMESTAMPTZ, "-infinity", "-infinity" },
	{ WAL_CLASS_TIMESTAMP, "2024-01-02 03:04:05+05",
	    "2024-01-02T03:04:05+05" },
	{ WAL_CLASS_TIMETZ, "03:04:05+05", "03:04:05+05" },
	{ WAL_CLASS_TEXT, "2024-01-02 03:04:05+05", "2024-01-02 03:04:05+05" },
	{ WAL_CLASS_TEXT, "t", "t" },
	{ WAL_CLASS_BOOL, "true", "true" },
	{ WAL_CLASS_BOOL, "", "" },
	{ WAL_CLASS_TEXT, "", "" },
	{ WAL_CLASS_TEXT, "01/02/2024 04:04:05 CET",
	    "01/02/2024 04:04:05 CET" },
	/* Other DateStyles than ISO (SQL, German, Postgres): unknown. */
	{ WAL_CLASS_TIMESTAMPTZ, "01/02/2024 04:04:05 CET", NULL },
	{ WAL_CLASS_TIMESTAMPTZ, "02.01.2024 04:04:05 CET", NULL },
	{ WAL_CLASS_TIMESTAMPTZ, "Tue Jan 02 04:04:05 2024 CET", NULL },
	{ WAL_CLASS_TIMESTAMP, "01/02/2024 04:04:05", NULL },
	{ WAL_CLASS_TIMESTAMP, "2024-01-02 03:04", NULL },
	{ WAL_CLASS_TIMESTAMP, "2024-01-02 03:04:0", NULL },
	{ WAL_CLASS_TIMESTAMP, "202-01-02 03:04:05", NULL },
	{ WAL_CLASS_TIMESTAMP, "2024-01-02T03:04:05", NULL },
	{ WAL_CLASS_TIMESTAMP, "", NULL },
	{ WAL_CLASS_TIMESTAMP, "infinityx", NULL },
};

static void
test_texts(void **state)
{
	struct wal_rels *rels = wal_rels_new();
	char why[256];

	for (size_t i = 0; i < sizeof(text_cases) / sizeof(*text_cases); i++) {
		const struct text_case *c = &text_cases[i];
		const char *got;

		tcase = c->wal;
		got = insert_text(rels, c->cls, c->wal, why, sizeof(why));
		if (c->json == NULL && (got != NULL || strstr(why, "came in "
		    "another form than ISO 8601: start the stream with "
		    "DateStyle ISO") == NULL))
			t_fail(__LINE__, "got \"%s\", want it unknown",
			    got ? got : why);
		if (c->json != NULL && (got == NULL || strcmp(got, c->json)))
			t_fail(__LINE__, "got \"%s\", want \"%s\"",
			    got ? got : why, c->json);
	}
	wal_rels_free(rels);
	t_done();
}

/* ------------------------------------------------------------------ */
/* The rules, on public.t (id int4 key, email text, big text, flag bool). */

struct watch {
	const char *name;	/* NULL ends the list */
	uint32_t typid;
	enum wal_class cls;
};

#define MAXV 6

struct event_case {
	const char *name;
	char replident;
	struct pb_col cols[MAXV];	/* NULL: T_COLS */
	struct watch watch[MAXV];
	uint32_t watch_relid;		/* 0: public.t's, 100 */
	bool no_relation;
	char kind, old_kind;
	struct pb_val old[MAXV], new[MAXV];
	enum wal_event_result want;
	const char *why;		/* a substring, but for OK */
	const char *old_img, *new_img;	/* image_str(); NULL: absent */
};

#define T_COLS { { "id", 23, true }, { "email", 25, false }, \
	{ "big", 25, false }, { "flag", 16, false } }
#define W_ID { "id", 23, WAL_CLASS_TEXT }
#define W_EMAIL { "email", 25, WAL_CLASS_TEXT }
#define W_BIG { "big", 25, WAL_CLASS_TEXT }
#define W_FLAG { "flag", 16, WAL_CLASS_BOOL }
#define ROW(id, email, big, flag) { id, email, big, flag }
#define R1 ROW(PB_T("1"), PB_T("a@x.io"), PB_T("long"), PB_T("t"))
#define R2 ROW(PB_T("2"), PB_T("b@x.io"), PB_T("long"), PB_T("f"))
#define K1 ROW(PB_T("1"), PB_N, PB_N, PB_N)
#define EV(n, ri, k, ok, ...) { .name = (n), .replident = (ri), .kind = (k), \
	.old_kind = (ok), __VA_ARGS__ }
#define NOT_COVERED "the replica identity of public.t does not cover " \
	"watched column \"email\": call pginval.watch() again, which sets it"

static const struct event_case event_cases[] = {
	EV("insert", 'd', 'I', 0, .watch = { W_ID, W_EMAIL, W_FLAG },
	    .new = R1, .want = WAL_EVENT_OK,
	    .new_img = "id=1|email=a@x.io|flag=true"),
	EV("insert of a null", 'd', 'I', 0, .watch = { W_EMAIL, W_ID },
	    .new = ROW(PB_T("1"), PB_N, PB_N, PB_T("t")),
	    .want = WAL_EVENT_OK, .new_img = "email|id=1"),
	EV("insert in binary", 'd', 'I', 0, .watch = { W_ID, W_FLAG },
	    .new = ROW(PB_T("1"), PB_N, PB_N, PB_B("\x01")),
	    .want = WAL_EVENT_UNKNOWN, .why = "watched column \"flag\" of "
	    "public.t came in binary: start the stream without the binary "
	    "option"),
	EV("binary in a column not watched", 'd', 'I', 0, .watch = { W_ID },
	    .new = ROW(PB_T("1"), PB_B("x"), PB_N, PB_N),
	    .want = WAL_EVENT_OK, .new_img = "id=1"),
	EV("insert of an unchanged value", 'd', 'I', 0, .watch = { W_BIG },
	    .new = ROW(PB_T("1"), PB_N, PB_U, PB_N),
	    .want = WAL_EVENT_UNKNOWN, .why = "watched column \"big\" of "
	    "public.t is an unchanged TOASTed value that the old row does not "
	    "carry: call pginval.watch() again, which sets the replica "
	    "identity"),

	/* Updates without an old row: the key did not change. */
	EV("update of the key's columns", 'd', 'U', 0, .watch = { W_ID },
	    .new = R1, .want = WAL_EVENT_OK, .old_img = "id=1",
	    .new_img = "id=1"),
	EV("update of a column out of the key", 'd', 'U', 0,
	    .watch = { W_ID, W_EMAIL }, .new = R1, .want = WAL_EVENT_UNKNOWN,
	    .why = NOT_COVERED),
	EV("update under replica identity full", 'f', 'U', 0,
	    .watch = { W_EMAIL, W_FLAG }, .new = R1, .want = WAL_EVENT_OK,
	    .old_img = "email=a@x.io|flag=true",
	    .new_img = "email=a@x.io|flag=true"),
	EV("update under an index on id and email", 'i', 'U', 0,
	    .cols = { { "id", 23, true }, { "email", 25, true },
	    { "big", 25, false }, { "flag", 16, false } },
	    .watch = { W_EMAIL, W_ID }, .new = R1, .want = WAL_EVENT_OK,
	    .old_img = "email=a@x.io|id=1", .new_img = "email=a@x.io|id=1"),
	EV("update of an unchanged key value", 'd', 'U', 0, .watch = { W_ID },
	    .new = ROW(PB_U, PB_N, PB_N, PB_N), .want = WAL_EVENT_UNKNOWN,
	    .why = "watched column \"id\" of public.t is an unchanged"),
	EV("update under replica identity nothing", 'n', 'U', 0,
	    .cols = { { "id", 23, false }, { "email", 25, false },
	    { "big", 25, false }, { "flag", 16, false } },
	    .watch = { W_ID }, .new = R1, .want = WAL_EVENT_UNKNOWN,
	    .why = "the replica identity of public.t does not cover watched "
	    "column \"id\""),

	/* Updates with the old key. */
	EV("update of the key", 'd', 'U', 'K', .watch = { W_ID },
	    .old = K1, .new = R2, .want = WAL_EVENT_OK, .old_img = "id=1",
	    .new_img = "id=2"),
	EV("update of the key, email watched", 'd', 'U', 'K',
	    .watch = { W_ID, W_EMAIL }, .old = K1, .new = R2,
	    .want = WAL_EVENT_UNKNOWN, .why = NOT_COVERED),
	EV("old key under replica identity full", 'f', 'U', 'K',
	    .watch = { W_ID, W_EMAIL }, .old = K1, .new = R2,
	    .want = WAL_EVENT_OK, .old_img = "id=1|email",
	    .new_img = "id=2|email=b@x.io"),
	EV("unchanged key value taken from the old key", 'd', 'U', 'K',
	    .watch = { W_ID }, .old = K1, .new = ROW(PB_U, PB_N, PB_N, PB_N),
	    .want = WAL_EVENT_OK, .old_img = "id=1", .new_img = "id=1"),

	/* Updates with the old row. */
	EV("update with the old row", 'f', 'U', 'O',
	    .watch = { W_ID, W_EMAIL, W_FLAG }, .old = R1, .new = R2,
	    .want = WAL_EVENT_OK, .old_img = "id=1|email=a@x.io|flag=true",
	    .new_img = "id=2|email=b@x.io|flag=false"),
	EV("unchanged value taken from the old row", 'f', 'U', 'O',
	    .watch = { W_BIG, W_ID }, .old = R1,
	    .new = ROW(PB_T("1"), PB_T("b@x.io"), PB_U, PB_T("t")),
	    .want = WAL_EVENT_OK, .old_img = "big=long|id=1",
	    .new_img = "big=long|id=1"),
	EV("unchanged in both rows", 'f', 'U', 'O', .watch = { W_BIG },
	    .old = ROW(PB_T("1"), PB_N, PB_U, PB_N),
	    .new = ROW(PB_T("1"), PB_N, PB_U, PB_N),
	    .want = WAL_EVENT_UNKNOWN,
	    .why = "watched column \"big\" of public.t is an unchanged"),
	EV("binary in the old row", 'f', 'U', 'O', .watch = { W_EMAIL },
	    .old = ROW(PB_T("1"), PB_B("a"), PB_N, PB_N), .new = R2,
	    .want = WAL_EVENT_UNKNOWN, .why = "came in binary"),

	/* Deletes. */
	EV("delete", 'd', 'D', 'K', .watch = { W_ID }, .old = K1,
	    .want = WAL_EVENT_OK, .old_img = "id=1"),
	EV("delete, email watched", 'd', 'D', 'K', .watch = { W_ID, W_EMAIL },
	    .old = K1, .want = WAL_EVENT_UNKNOWN, .why = NOT_COVERED),
	EV("delete with the old row", 'f', 'D', 'O',
	    .watch = { W_FLAG, W_EMAIL }, .old = R2, .want = WAL_EVENT_OK,
	    .old_img = "flag=false|email=b@x.io"),

	/* The map and the relation. */
	EV("a watched column the table no longer has", 'd', 'I', 0,
	    .watch = { { "gone", 25, WAL_CLASS_UNSUPPORTED }, W_ID },
	    .new = R1, .want = WAL_EVENT_OK, .new_img = "id=1"),
	EV("no watched column left", 'd', 'U', 0,
	    .watch = { { "gone", 25, WAL_CLASS_TEXT } }, .new = R1,
	    .want = WAL_EVENT_OK, .old_img = "", .new_img = ""),
	EV("a type that cannot be rendered", 'd', 'I', 0,
	    .watch = { W_ID, { "email", 25, WAL_CLASS_UNSUPPORTED } },
	    .new = R1, .want = WAL_EVENT_UNKNOWN, .why = "watched column "
	    "\"email\" of public.t has a type whose text the WAL does not give "
	    "as the triggers do"),
	EV("a column whose type changed", 'd', 'I', 0,
	    .watch = { W_ID, { "email", 1043, WAL_CLASS_TEXT } },
	    .new = R1, .want = WAL_EVENT_STALE, .why = "watched column "
	    "\"email\" of public.t is of type 25 in the stream but 1043 in the "
	    "map: read pginval.wal_columns() again"),
	EV("a table not watched", 'd', 'I', 0, .watch = { W_ID },
	    .watch_relid = 200, .new = R1, .want = WAL_EVENT_STALE,
	    .why = "public.t is in the publication but not among the watched "
	    "tables: the map is older than the stream; read "
	    "pginval.wal_columns() again"),
	EV("no relation", 'd', 'I', 0, .watch = { W_ID }, .no_relation = true,
	    .new = R1, .want = WAL_EVENT_BAD, .why = "a change of relation 100 "
	    "came before its Relation message: the stream is malformed"),
	EV("a column less", 'd', 'I', 0, .watch = { W_ID },
	    .new = { PB_T("1"), PB_N, PB_N }, .want = WAL_EVENT_BAD,
	    .why = "the new row of a change of public.t has 3 columns where "
	    "its Relation message has 4: the stream is malformed"),
	EV("an old row of a column more", 'f', 'D', 'O', .watch = { W_ID },
	    .old = { PB_T("1"), PB_N, PB_N, PB_N, PB_N },
	    .want = WAL_EVENT_BAD, .why = "the old row of a change of public.t "
	    "has 5 columns"),
};

static void
check_event_case(struct wal_rels *rels, const struct event_case *c)
{
	static const struct pb_col t_cols[] = T_COLS;
	struct pb_col cols[MAXV + 1];
	struct pb_msg b;
	struct pgo_msg m;
	struct event ev;
	enum wal_event_result res;
	char err[256], why[512];

	tcase = c->name;
	wal_rels_clear(rels);
	for (const struct watch *w = c->watch; w->name != NULL; w++)
		wal_rels_watch(rels, c->watch_relid ? c->watch_relid : 100,
		    w->name, w->typid, w->cls);
	memset(cols, 0, sizeof(cols));
	memcpy(cols, c->cols[0].name ? c->cols : t_cols, sizeof(t_cols));
	pb_relation(&b, 100, "public", "t", c->replident, cols);
	parse(&b, &m);
	if (!c->no_relation && wal_rels_relation(rels, &m, err, sizeof(err)))
		fail_msg("%s: relation: %s", c->name, err);
	pb_change(&b, c->kind, 100, c->old_kind, c->old,
	    c->kind == 'D' ? NULL : c->new);
	parse(&b, &m);
	strcpy(why, "(untouched)");
	res = wal_rels_event(rels, &m, 1234, &ev, why, sizeof(why));
	if (res != c->want) {
		t_fail(__LINE__, "got %s (%s), want %s", result_names[res], why,
		    result_names[c->want]);
		return;
	}
	if (res != WAL_EVENT_OK) {
		if (strstr(why, c->why) == NULL)
			t_fail(__LINE__, "why: got \"%s\", want \"%s\"", why,
			    c->why);
		return;
	}
	if (why[0] != '\0')
		t_fail(__LINE__, "why is \"%s\" on OK", why);
	if (ev.op != (c->kind == 'I' ? EVENT_INSERT : c->kind == 'U' ?
	    EVENT_UPDATE : EVENT_DELETE) || ev.ts != 1234 || ev.big ||
	    ev.rows != NULL || ev.nrows != 0 ||
	    strcmp(ev.table, "public.t") != 0)
		t_fail(__LINE__, "op %d table %s ts %lld", ev.op, ev.table,
		    (long long)ev.ts);
	check_image(__LINE__, "old", &ev.old, c->old_img);
	check_image(__LINE__, "new", &ev.new, c->new_img);
}

static void
test_events(void **state)
{
	struct wal_rels *rels = wal_rels_new();

	for (size_t i = 0; i < sizeof(event_cases) / sizeof(*event_cases); i++)
		check_event_case(rels, &event_cases[i]);
	wal_rels_free(rels);
	t_done();
}

/* ------------------------------------------------------------------ */
/* The real session, under two maps. */

struct real_watch {
	uint32_t relid;
	const char *name;
	uint32_t typid;		/* 0: the one the stream says */
	enum wal_class cls;
};

struct real_event {
	const char *msg;
	enum wal_event_result want;
	const char *why;
	const char *old_img, *new_img;
};

#define BIG "<2240 c4ca4238>"	/* md5('1') || md5('2') || ... */

/* users, full_t and uidx watched widely; items on an enum; orders not. */
static const struct real_watch wide_map[] = {
	{ REAL_USERS, "id", 23, WAL_CLASS_TEXT },
	{ REAL_USERS, "active", 16, WAL_CLASS_BOOL },
	{ REAL_USERS, "seen", 1184, WAL_CLASS_TIMESTAMPTZ },
	{ REAL_USERS, "name", 25, WAL_CLASS_TEXT },
	{ REAL_FULL_T, "id", 23, WAL_CLASS_TEXT },
	{ REAL_FULL_T, "k", 25, WAL_CLASS_TEXT },
	{ REAL_FULL_T, "ts", 1114, WAL_CLASS_TIMESTAMP },
	{ REAL_FULL_T, "big", 25, WAL_CLASS_TEXT },
	{ REAL_UIDX, "a", 23, WAL_CLASS_TEXT },
	{ REAL_UIDX, "b", 25, WAL_CLASS_TEXT },
	{ REAL_ITEMS, "id", 23, WAL_CLASS_TEXT },
	{ REAL_ITEMS, "m", 0, WAL_CLASS_UNSUPPORTED },
	{ 0, NULL, 0, WAL_CLASS_TEXT },
};

static const struct real_event wide_events[] = {
	{ "insert users 3 I", WAL_EVENT_OK, NULL, NULL,
	    "id=1|active=true|seen=2024-01-02T03:04:05+00:00|name=Ann" },
	{ "insert users 4 I", WAL_EVENT_OK, NULL, NULL,
	    "id=2|active=false|seen|name=Bob" },
	{ "update email, bio unchanged 2 U", WAL_EVENT_UNKNOWN,
	    "the replica identity of public.users does not cover watched "
	    "column \"active\"", NULL, NULL },
	{ "update key 2 U", WAL_EVENT_UNKNOWN, "does not cover watched column "
	    "\"active\"", NULL, NULL },
	{ "delete users 2 D", WAL_EVENT_UNKNOWN, "does not cover", NULL, NULL },
	{ "full 3 I", WAL_EVENT_OK, NULL, NULL,
	    "id=1|k=k1|ts=2024-01-02T03:04:05|big=" BIG },
	{ "full 4 I", WAL_EVENT_OK, NULL, NULL, "id=2|k|ts|big=small" },
	/* big stayed in TOAST: its new value is the old row's. */
	{ "full 5 U", WAL_EVENT_OK, NULL,
	    "id=1|k=k1|ts=2024-01-02T03:04:05|big=" BIG,
	    "id=1|k=k1b|ts=2024-01-02T03:04:05|big=" BIG },
	{ "full 6 D", WAL_EVENT_OK, NULL, "id=2|k|ts|big=small", NULL },
	/* name was dropped: left out. */
	{ "alter users 3 I", WAL_EVENT_OK, NULL, NULL, "id=4|active|seen" },
	{ "orders and items 3 I", WAL_EVENT_STALE, "public.orders is in the "
	    "publication but not among the watched tables", NULL, NULL },
	{ "orders and items 6 I", WAL_EVENT_UNKNOWN, "watched column \"m\" of "
	    "public.items has a type whose text", NULL, NULL },
	{ "uidx 3 I", WAL_EVENT_OK, NULL, NULL, "a=1|b=b1" },
	{ "uidx 4 U", WAL_EVENT_OK, NULL, "a=1|b=b1", "a=1|b=b1" },
	{ "uidx 5 U", WAL_EVENT_OK, NULL, "a=1|b=b1", "a=1|b=b2" },
	{ "uidx 6 D", WAL_EVENT_OK, NULL, "a=1|b=b2", NULL },
	{ NULL, WAL_EVENT_OK, NULL, NULL, NULL },
};

/* users watched on its key alone; uidx on a column out of its key. */
static const struct real_watch key_map[] = {
	{ REAL_USERS, "id", 23, WAL_CLASS_TEXT },
	{ REAL_UIDX, "c", 25, WAL_CLASS_TEXT },
	{ REAL_UIDX, "a", 23, WAL_CLASS_TEXT },
	{ 0, NULL, 0, WAL_CLASS_TEXT },
};

static const struct real_event key_events[] = {
	{ "insert users 3 I", WAL_EVENT_OK, NULL, NULL, "id=1" },
	{ "update email, bio unchanged 2 U", WAL_EVENT_OK, NULL, "id=2",
	    "id=2" },
	{ "update key 2 U", WAL_EVENT_OK, NULL, "id=2", "id=3" },
	{ "delete users 2 D", WAL_EVENT_OK, NULL, "id=1", NULL },
	{ "alter users 3 I", WAL_EVENT_OK, NULL, NULL, "id=4" },
	{ "full 3 I", WAL_EVENT_STALE, "public.full_t is in the publication",
	    NULL, NULL },
	{ "uidx 3 I", WAL_EVENT_OK, NULL, NULL, "c=c1|a=1" },
	{ "uidx 4 U", WAL_EVENT_UNKNOWN, "the replica identity of public.uidx "
	    "does not cover watched column \"c\"", NULL, NULL },
	{ "uidx 6 D", WAL_EVENT_UNKNOWN, "does not cover watched column \"c\"",
	    NULL, NULL },
	{ NULL, WAL_EVENT_OK, NULL, NULL, NULL },
};

/* The type the real Relation of relid gives col. */
static uint32_t
real_typid(uint32_t relid, const char *col)
{
	for (size_t i = 0; i < sizeof(real_msgs) / sizeof(*real_msgs); i++) {
		struct pgo_msg m;
		struct pgo_rel_col c;
		size_t len, off = 0;
		unsigned char *p = pb_unhex(real_msgs[i].hex, &len);
		uint32_t typid = 0;
		char err[256];

		if (pgo_parse(p, len, &m, err, sizeof(err)) == 0 &&
		    m.kind == 'R' && m.relid == relid)
			while (typid == 0 && pgo_rel_next(&m, &off, &c) == 1)
				if (strcmp(c.name, col) == 0)
					typid = c.typid;
		free(p);
		if (typid != 0)
			return typid;
	}
	fail_msg("no column %s in relation %u", col, relid);
	return 0;
}

static void
check_real_event(struct wal_rels *rels, const struct pgo_msg *m,
    const struct real_event *e, int64_t ts)
{
	struct event ev;
	enum wal_event_result res;
	char why[512];

	res = wal_rels_event(rels, m, ts, &ev, why, sizeof(why));
	if (res != e->want) {
		t_fail(__LINE__, "got %s (%s), want %s", result_names[res], why,
		    result_names[e->want]);
	} else if (res != WAL_EVENT_OK) {
		if (strstr(why, e->why) == NULL)
			t_fail(__LINE__, "why: got \"%s\", want \"%s\"", why,
			    e->why);
	} else {
		if (ev.ts != ts || ts == 0)
			t_fail(__LINE__, "ts %lld", (long long)ev.ts);
		check_image(__LINE__, "old", &ev.old, e->old_img);
		check_image(__LINE__, "new", &ev.new, e->new_img);
	}
}

/* Replays the session through a map; want lists the changes to check. */
static void
run_real(const struct real_watch *map, const struct real_event *want)
{
	struct wal_rels *rels = wal_rels_new();
	int64_t ts = 0;
	size_t checked = 0, nwant = 0;

	for (const struct real_watch *w = map; w->name != NULL; w++)
		wal_rels_watch(rels, w->relid, w->name, w->typid ? w->typid :
		    real_typid(w->relid, w->name), w->cls);
	while (want[nwant].msg != NULL)
		nwant++;
	for (size_t i = 0; i < sizeof(real_msgs) / sizeof(*real_msgs); i++) {
		struct pgo_msg m;
		char err[256];
		size_t len;
		unsigned char *p = pb_unhex(real_msgs[i].hex, &len);

		tcase = real_msgs[i].name;
		if (pgo_parse(p, len, &m, err, sizeof(err)) != 0)
			fail_msg("%s: %s", tcase, err);
		if (m.kind == 'B')
			ts = m.ts;
		if (m.kind == 'R' && wal_rels_relation(rels, &m, err,
		    sizeof(err)) != 0)
			t_fail(__LINE__, "relation: %s", err);
		for (uint32_t k = 0; m.kind == 'T' && k < m.nrelids; k++)
			if (!wal_rels_table(rels, pgo_trunc_relid(&m, k)))
				t_fail(__LINE__, "truncate of a relation never "
				    "described");
		for (size_t j = 0; j < nwant; j++)
			if (strcmp(want[j].msg, tcase) == 0) {
				check_real_event(rels, &m, &want[j], ts);
				checked++;
			}
		free(p);
	}
	tcase = "";
	if (checked != nwant)
		t_fail(__LINE__, "%zu of %zu expected events met", checked,
		    nwant);
	assert_string_equal(wal_rels_table(rels, REAL_ORDERS), "public.orders");
	assert_true(wal_rels_watched(rels, REAL_USERS));
	assert_false(wal_rels_watched(rels, REAL_ORDERS));
	wal_rels_free(rels);
}

static void
test_real_wide(void **state)
{
	run_real(wide_map, wide_events);
	t_done();
}

static void
test_real_key(void **state)
{
	run_real(key_map, key_events);
	t_done();
}

/* ------------------------------------------------------------------ */

/* The scratch is reused: a long transaction does not allocate per row.
 * A Relation replaces what was known, and clear forgets everything. */
static void
test_lifecycle(void **state)
{
	static const struct pb_col cols[] = { { "id", 23, true },
	    { "v", 25, false }, { NULL, 0, false } };
	static const struct pb_col cols2[] = { { "v", 25, true },
	    { NULL, 0, false } };
	struct pb_val vals[] = { PB_T("1"), PB_T("x"), { 0, NULL } };
	struct wal_rels *rels = wal_rels_new();
	struct pb_msg rb, ib;
	struct pgo_msg rm, im;
	struct event ev;
	char err[256], why[256];
	const struct row_col *first = NULL;
	const char *text = NULL;

	wal_rels_watch(rels, 7, "v", 25, WAL_CLASS_TEXT);
	wal_rels_watch(rels, 7, "id", 23, WAL_CLASS_TEXT);
	/* Again: replaces, does not add. */
	wal_rels_watch(rels, 7, "v", 25, WAL_CLASS_TEXT);
	assert_null(wal_rels_table(rels, 7));
	assert_true(wal_rels_watched(rels, 7));
	pb_relation(&rb, 7, "s", "t", 'd', cols);
	parse(&rb, &rm);
	assert_int_equal(wal_rels_relation(rels, &rm, err, sizeof(err)), 0);
	assert_string_equal(wal_rels_table(rels, 7), "s.t");
	pb_change(&ib, 'I', 7, 0, NULL, vals);
	parse(&ib, &im);
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(wal_rels_event(rels, &im, i, &ev, why,
		    sizeof(why)), WAL_EVENT_OK);
		assert_int_equal(ev.new.n, 2);
		if (first == NULL) {
			first = ev.new.cols;
			text = ev.new.cols[0].val;
		}
		assert_ptr_equal(ev.new.cols, first);
		assert_ptr_equal(ev.new.cols[0].val, text);
	}
	/* A Relation of another shape for the same table. */
	pb_relation(&rb, 7, "s", "t2", 'd', cols2);
	parse(&rb, &rm);
	assert_int_equal(wal_rels_relation(rels, &rm, err, sizeof(err)), 0);
	assert_string_equal(wal_rels_table(rels, 7), "s.t2");
	assert_int_equal(wal_rels_event(rels, &im, 0, &ev, why, sizeof(why)),
	    WAL_EVENT_BAD);
	/* A malformed Relation is refused and changes nothing. */
	rm.ncols++;
	assert_int_equal(wal_rels_relation(rels, &rm, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "Relation message of relation 7"));
	assert_string_equal(wal_rels_table(rels, 7), "s.t2");
	wal_rels_clear(rels);
	assert_null(wal_rels_table(rels, 7));
	assert_false(wal_rels_watched(rels, 7));
	assert_int_equal(wal_rels_event(rels, &im, 0, &ev, why, sizeof(why)),
	    WAL_EVENT_BAD);
	wal_rels_free(rels);
	wal_rels_free(NULL);
}

/* Many relations, described and watched in any order. */
static void
test_many_relations(void **state)
{
	static const struct pb_col cols[] = { { "id", 23, true },
	    { NULL, 0, false } };
	struct pb_val vals[] = { PB_T("9"), { 0, NULL } };
	struct wal_rels *rels = wal_rels_new();
	struct pb_msg b;
	struct pgo_msg m;
	struct event ev;
	char err[256], why[256], name[32];

	for (uint32_t i = 0; i < 500; i++) {
		uint32_t relid = (i * 7919) % 1000 + 1;

		snprintf(name, sizeof(name), "t%u", relid);
		pb_relation(&b, relid, "public", name, 'd', cols);
		parse(&b, &m);
		assert_int_equal(wal_rels_relation(rels, &m, err, sizeof(err)),
		    0);
		if (relid % 2 == 0)
			wal_rels_watch(rels, relid, "id", 23, WAL_CLASS_TEXT);
	}
	for (uint32_t i = 0; i < 500; i++) {
		uint32_t relid = (i * 7919) % 1000 + 1;

		snprintf(name, sizeof(name), "public.t%u", relid);
		assert_string_equal(wal_rels_table(rels, relid), name);
		pb_change(&b, 'I', relid, 0, NULL, vals);
		parse(&b, &m);
		assert_int_equal(wal_rels_event(rels, &m, 0, &ev, why,
		    sizeof(why)), relid % 2 ? WAL_EVENT_STALE : WAL_EVENT_OK);
	}
	assert_null(wal_rels_table(rels, 0));
	wal_rels_free(rels);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_class_parse),
		cmocka_unit_test(test_real_pairs),
		cmocka_unit_test(test_texts),
		cmocka_unit_test(test_events),
		cmocka_unit_test(test_real_wide),
		cmocka_unit_test(test_real_key),
		cmocka_unit_test(test_lifecycle),
		cmocka_unit_test(test_many_relations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
