/*
 * Unit tests for daemon/core/pgoutput.c: hand-built messages of every
 * kind, well-formed and not, every truncation of them, and the real
 * messages of a PostgreSQL 15 session (pgoutput_real.h, made by
 * gen_pgoutput_vectors.py).
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

/* ------------------------------------------------------------------ */
/* Messages as text, to compare with a case's. */

struct repr {
	char s[1024];
	size_t n;
};

static void repr_add(struct repr *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
repr_add(struct repr *r, const char *fmt, ...)
{
	va_list ap;

	if (r->n >= sizeof(r->s))
		return;
	va_start(ap, fmt);
	r->n += (size_t)vsnprintf(r->s + r->n, sizeof(r->s) - r->n, fmt, ap);
	va_end(ap);
}

/* "n|u|t:42|b:ff": a tuple's columns; a long value as "t:<2240 c4ca4238>".
 * "!" ends the text where pgo_tuple_next() failed. */
static const char *
tuple_repr(struct repr *r, const struct pgo_tuple *t)
{
	struct pgo_datum d;
	size_t off = 0, n = 0;
	int rc;

	r->n = 0;
	r->s[0] = '\0';
	if (!t->present)
		return NULL;
	while ((rc = pgo_tuple_next(t, &off, &d)) == 1) {
		repr_add(r, "%s%c", n++ ? "|" : "", d.kind);
		if (d.kind == 'b') {
			repr_add(r, ":");
			for (size_t i = 0; i < d.len; i++)
				repr_add(r, "%02x", (unsigned char)d.val[i]);
		} else if (d.kind == 't' && d.len > 40) {
			repr_add(r, ":<%zu %.8s>", d.len, d.val);
		} else if (d.kind == 't') {
			repr_add(r, ":%.*s", (int)d.len, d.val);
		}
	}
	if (rc < 0 || n != t->ncols)
		repr_add(r, "!");
	return r->s;
}

/* "*id:23|email:25": a Relation's columns, * before a key. */
static const char *
cols_repr(struct repr *r, const struct pgo_msg *m)
{
	struct pgo_rel_col c;
	size_t off = 0, n = 0;
	int rc;

	r->n = 0;
	r->s[0] = '\0';
	while ((rc = pgo_rel_next(m, &off, &c)) == 1) {
		repr_add(r, "%s%s%s:%u", n++ ? "|" : "", c.key ? "*" : "",
		    c.name, c.typid);
		if (c.typmod != -1)
			repr_add(r, "/%d", c.typmod);
	}
	if (rc < 0 || n != m->ncols)
		repr_add(r, "!");
	return r->s;
}

static const char *
relids_repr(struct repr *r, const struct pgo_msg *m)
{
	r->n = 0;
	r->s[0] = '\0';
	for (uint32_t i = 0; i < m->nrelids; i++)
		repr_add(r, "%s%u", i ? "," : "", pgo_trunc_relid(m, i));
	return r->s;
}

static void
check_str(int line, const char *what, const char *got, const char *want)
{
	if ((got == NULL) != (want == NULL) ||
	    (got != NULL && strcmp(got, want) != 0))
		t_fail(line, "%s: got \"%s\", want \"%s\"", what,
		    got ? got : "(none)", want ? want : "(none)");
}

/* ------------------------------------------------------------------ */

struct parse_case {
	const char *name;
	const char *hex;
	const char *err;	/* a substring of err; NULL: it parses */
	char kind;
	uint64_t lsn, end_lsn;
	int64_t ts;
	uint32_t xid, relid;
	const char *nsp, *rel;
	char replident;
	const char *cols;	/* cols_repr() */
	char old_kind;
	const char *old, *new;	/* tuple_repr(); NULL: absent */
	const char *relids;	/* relids_repr() */
	uint8_t flags;
};

/* A case that parses, with the fields it must have; one that is refused. */
#define GOOD(n, h, k, ...) { .name = (n), .hex = (h), .kind = (k), __VA_ARGS__ }
#define BAD(n, h, e) { .name = (n), .hex = (h), .err = (e) }

#define REL16385 "00004001"
#define TS2024 "0002b0d5d4e94000"	/* 2024-01-01 00:00:00 UTC */
#define TS2024_UNIX INT64_C(1704067200000000)

static const struct parse_case parse_cases[] = {
	GOOD("begin", "42 0000000001234567 " TS2024 " 000004d2", 'B',
	    .lsn = 0x1234567, .ts = TS2024_UNIX, .xid = 1234),
	GOOD("begin at the epoch",
	    "42 0000000000000001 0000000000000000 00000001", 'B',
	    .lsn = 1, .ts = PGO_EPOCH_US, .xid = 1),
	GOOD("begin before 2000",
	    "42 0000000000000001 ffffffffffffffff 00000001", 'B',
	    .lsn = 1, .ts = PGO_EPOCH_US - 1, .xid = 1),
	GOOD("begin far ahead",
	    "42 0000000000000001 7fffffffffffffff 00000001", 'B',
	    .lsn = 1, .ts = INT64_MAX, .xid = 1),
	GOOD("commit", "43 00 0000000001234567 0000000001234600 " TS2024, 'C',
	    .lsn = 0x1234567, .end_lsn = 0x1234600, .ts = TS2024_UNIX),
	GOOD("relation", "52 " REL16385 " 7075626c696300 757365727300 64 0002"
	    " 01 696400 00000017 ffffffff 00 656d61696c00 00000413 00000084",
	    'R', .relid = 16385, .nsp = "public", .rel = "users",
	    .replident = 'd', .cols = "*id:23|email:1043/132"),
	GOOD("relation without columns", "52 " REL16385 " 00 7400 66 0000",
	    'R', .relid = 16385, .nsp = "", .rel = "t", .replident = 'f',
	    .cols = ""),
	GOOD("insert", "49 " REL16385 " 4e 0004 6e 75 74 00000002 3432"
	    " 62 00000001 ff", 'I', .relid = 16385, .new = "n|u|t:42|b:ff"),
	GOOD("insert of no column", "49 " REL16385 " 4e 0000", 'I',
	    .relid = 16385, .new = ""),
	GOOD("insert of an empty text", "49 " REL16385 " 4e 0001 74 00000000",
	    'I', .relid = 16385, .new = "t:"),
	GOOD("update", "55 " REL16385 " 4e 0001 74 00000001 31", 'U',
	    .relid = 16385, .new = "t:1"),
	GOOD("update with a key", "55 " REL16385 " 4b 0002 74 00000001 31 6e"
	    " 4e 0002 74 00000001 32 75", 'U', .relid = 16385,
	    .old_kind = 'K', .old = "t:1|n", .new = "t:2|u"),
	GOOD("update with an old row", "55 " REL16385 " 4f 0001 74 00000000"
	    " 4e 0001 74 00000001 78", 'U', .relid = 16385,
	    .old_kind = 'O', .old = "t:", .new = "t:x"),
	GOOD("delete with a key", "44 " REL16385 " 4b 0001 74 00000001 37",
	    'D', .relid = 16385, .old_kind = 'K', .old = "t:7"),
	GOOD("delete with an old row", "44 " REL16385 " 4f 0002 6e 6e", 'D',
	    .relid = 16385, .old_kind = 'O', .old = "n|n"),
	GOOD("truncate", "54 00000002 03 " REL16385 " 00004002", 'T',
	    .relids = "16385,16386", .flags = 3),
	GOOD("truncate of nothing", "54 00000000 00", 'T', .relids = ""),
	/* Accepted unread. */
	GOOD("origin", "4f 0000000000000001 6f7200", 'O'),
	GOOD("type", "59 00004003 7075626c696300 6d6f6f6400", 'Y'),
	GOOD("message", "4d 01 0000000000000001 7000 00000002 6869", 'M',
	    .lsn = 1),
	GOOD("a kind byte alone", "59", 'Y'),
	GOOD("an unknown kind", "5a 00", 'Z'),

	BAD("empty", "", "empty message"),
	BAD("message content short", "4d 01 0000000000000001 7000 00000003 6869",
	    "Message: 3 bytes announced"),
	BAD("message prefix unterminated", "4d 01 0000000000000001 7070",
	    "Message: truncated"),
	BAD("begin short", "42 0000000001234567 " TS2024 " 0004d2",
	    "Begin: truncated"),
	BAD("begin long", "42 0000000001234567 " TS2024 " 000004d2 00",
	    "1 unexpected bytes"),
	BAD("commit short", "43 00 0000000001234567 0000000001234600 0002b0d5",
	    "Commit: truncated"),
	BAD("relation name unterminated", "52 " REL16385 " 7075626c6963",
	    "Relation: truncated before its columns"),
	BAD("relation without its count", "52 " REL16385 " 7000 7400 64 00",
	    "Relation: truncated before its columns"),
	BAD("relation with a column less", "52 " REL16385 " 7000 7400 64 0003"
	    " 01 696400 00000017 ffffffff 00 656d61696c00 00000019 ffffffff",
	    "truncated in column 3 of 3"),
	BAD("relation column unterminated", "52 " REL16385 " 7000 7400 64 0001"
	    " 01 6964", "truncated in column 1 of 1"),
	BAD("relation with a byte more", "52 " REL16385 " 7000 7400 64 0000 00",
	    "unexpected bytes"),
	BAD("insert tagged K", "49 " REL16385 " 4b 0000",
	    "Insert: tuple tag 0x4b, expected 'N'"),
	BAD("insert of an unknown kind", "49 " REL16385 " 4e 0001 78",
	    "column 1 of 1 has the unknown kind 0x78"),
	BAD("insert of a negative length", "49 " REL16385
	    " 4e 0001 74 ffffffff 31", "truncated in column 1 of 1"),
	BAD("insert of a byte less", "49 " REL16385 " 4e 0001 74 00000002 31",
	    "truncated in column 1 of 1"),
	BAD("insert of a column less", "49 " REL16385 " 4e 0002 6e",
	    "truncated in column 2 of 2"),
	BAD("insert of a column more", "49 " REL16385 " 4e 0001 6e 6e",
	    "1 unexpected bytes"),
	BAD("insert without a tuple", "49 " REL16385, "truncated before"),
	BAD("update with a bad tag", "55 " REL16385 " 4b 0001 6e 58 0001 6e",
	    "Update: tuple tag 0x58, expected 'N'"),
	BAD("update without a new row", "55 " REL16385 " 4b 0001 6e",
	    "truncated after its old tuple"),
	BAD("update of nothing", "55 " REL16385, "truncated before its tuple"),
	BAD("delete tagged N", "44 " REL16385 " 4e 0001 6e",
	    "Delete: tuple tag 0x4e, expected 'K' or 'O'"),
	BAD("delete with a new row", "44 " REL16385 " 4b 0001 6e 4e 0001 6e",
	    "unexpected bytes"),
	BAD("truncate of a relation less", "54 00000003 00 " REL16385
	    " 00004002", "3 relations announced, room for 2"),
	BAD("truncate of 2^30 relations", "54 40000000 00 " REL16385,
	    "1073741824 relations announced"),
	BAD("truncate with a byte more", "54 00000001 00 " REL16385 " 00",
	    "unexpected bytes"),
	BAD("truncate without flags", "54 00000001", "Truncate: truncated"),
};

static void
check_parse_case(const struct parse_case *c)
{
	struct repr r;
	struct pgo_msg m;
	char err[256] = "";
	size_t len;
	unsigned char *p = pb_unhex(c->hex, &len);
	int rc = pgo_parse(p, len, &m, err, sizeof(err));

	tcase = c->name;
	if (c->err != NULL) {
		if (rc != -1 || strstr(err, c->err) == NULL)
			t_fail(__LINE__, "got %d \"%s\", want -1 \"%s\"", rc,
			    err, c->err);
		free(p);
		return;
	}
	if (rc != 0) {
		t_fail(__LINE__, "refused: %s", err);
		free(p);
		return;
	}
	if (m.kind != c->kind || m.lsn != c->lsn || m.end_lsn != c->end_lsn ||
	    m.ts != c->ts || m.xid != c->xid || m.relid != c->relid ||
	    m.replident != c->replident || m.old_kind != c->old_kind ||
	    m.trunc_flags != c->flags)
		t_fail(__LINE__, "got kind %c lsn %llx/%llx ts %lld xid %u "
		    "relid %u replident %c old_kind %c flags %u", m.kind,
		    (unsigned long long)m.lsn, (unsigned long long)m.end_lsn,
		    (long long)m.ts, m.xid, m.relid, m.replident ? m.replident :
		    '0', m.old_kind ? m.old_kind : '0', m.trunc_flags);
	if (c->kind == 'R') {
		check_str(__LINE__, "nspname", m.nspname, c->nsp);
		check_str(__LINE__, "relname", m.relname, c->rel);
		check_str(__LINE__, "columns", cols_repr(&r, &m), c->cols);
	}
	check_str(__LINE__, "old", tuple_repr(&r, &m.old), c->old);
	check_str(__LINE__, "new", tuple_repr(&r, &m.new), c->new);
	if (c->kind == 'T')
		check_str(__LINE__, "relids", relids_repr(&r, &m), c->relids);
	free(p);
}

static void
test_parse_cases(void **state)
{
	for (size_t i = 0; i < sizeof(parse_cases) / sizeof(*parse_cases); i++)
		check_parse_case(&parse_cases[i]);
	t_done();
}

/* Every proper prefix of a message of a kind that is read is refused, with
 * a reason, and no read goes past it (the sanitizers would tell). */
static void
check_truncations(const unsigned char *p, size_t len)
{
	struct pgo_msg m;
	char err[256];

	if (len == 0 || strchr("BCRIUDT", p[0]) == NULL)
		return;
	for (size_t n = 0; n < len; n++) {
		unsigned char *cut = malloc(n ? n : 1);

		memcpy(cut, p, n);
		err[0] = '\0';
		if (pgo_parse(cut, n, &m, err, sizeof(err)) != -1 ||
		    err[0] == '\0')
			t_fail(__LINE__, "the first %zu of %zu bytes: not "
			    "refused", n, len);
		free(cut);
	}
}

static void
test_parse_truncations(void **state)
{
	for (size_t i = 0; i < sizeof(parse_cases) / sizeof(*parse_cases);
	    i++) {
		size_t len;
		unsigned char *p;

		if (parse_cases[i].err != NULL)
			continue;
		tcase = parse_cases[i].name;
		p = pb_unhex(parse_cases[i].hex, &len);
		check_truncations(p, len);
		free(p);
	}
	t_done();
}

/* A message's err fits any size, down to none. */
static void
test_parse_err_sizes(void **state)
{
	static const unsigned char msg[] = { 'B', 0, 1 };
	struct pgo_msg m;
	char err[8];

	assert_int_equal(pgo_parse(msg, sizeof(msg), &m, NULL, 0), -1);
	memset(err, 'x', sizeof(err));
	assert_int_equal(pgo_parse(msg, sizeof(msg), &m, err, 1), -1);
	assert_int_equal(err[0], '\0');
	assert_int_equal(pgo_parse(msg, sizeof(msg), &m, err, sizeof(err)), -1);
	assert_int_equal(strlen(err), sizeof(err) - 1);
}

/* What the builders of pgo_build.h make, as the other tests use them. */
static void
test_builders(void **state)
{
	static const struct pb_col cols[] = { { "id", 23, true },
	    { "v", 25, false }, { NULL, 0, false } };
	static const struct pb_val o[] = { PB_T("1"), PB_N, { 0, NULL } };
	static const struct pb_val n[] = { PB_T("2"), PB_U, { 0, NULL } };
	struct pb_msg b;
	struct pgo_msg m;
	struct repr r;
	char err[256];

	pb_relation(&b, 7, "public", "t", 'i', cols);
	assert_int_equal(pgo_parse(b.b, b.n, &m, err, sizeof(err)), 0);
	assert_string_equal(cols_repr(&r, &m), "*id:23|v:25");
	pb_change(&b, 'U', 7, 'K', o, n);
	assert_int_equal(pgo_parse(b.b, b.n, &m, err, sizeof(err)), 0);
	assert_string_equal(tuple_repr(&r, &m.old), "t:1|n");
	assert_string_equal(tuple_repr(&r, &m.new), "t:2|u");
}

/* ------------------------------------------------------------------ */
/* The real messages. */

static const struct real_msg *
real(const char *name)
{
	for (size_t i = 0; i < sizeof(real_msgs) / sizeof(*real_msgs); i++)
		if (strcmp(real_msgs[i].name, name) == 0)
			return &real_msgs[i];
	fail_msg("no real message \"%s\"", name);
	return NULL;
}

/* Each parses, is walked whole, and refuses each of its truncations;
 * a Begin and its Commit agree. */
static void
test_real_all(void **state)
{
	struct pgo_msg m, begin = { 0 };
	struct repr r;
	char err[256];

	for (size_t i = 0; i < sizeof(real_msgs) / sizeof(*real_msgs); i++) {
		size_t len, nl = strlen(real_msgs[i].name);
		unsigned char *p = pb_unhex(real_msgs[i].hex, &len);

		tcase = real_msgs[i].name;
		if (pgo_parse(p, len, &m, err, sizeof(err)) != 0) {
			t_fail(__LINE__, "refused: %s", err);
			free(p);
			continue;
		}
		if (m.kind != real_msgs[i].name[nl - 1])
			t_fail(__LINE__, "kind %c", m.kind);
		if (m.kind == 'R' && strchr(cols_repr(&r, &m), '!') != NULL)
			t_fail(__LINE__, "columns %s", r.s);
		if ((m.old.present && strchr(tuple_repr(&r, &m.old), '!')) ||
		    (m.new.present && strchr(tuple_repr(&r, &m.new), '!')))
			t_fail(__LINE__, "a tuple does not walk: %s", r.s);
		if (m.kind == 'B') {
			begin = m;
			/* Captured this century. */
			if (m.ts < INT64_C(1700000000000000) ||
			    m.ts > INT64_C(4102444800000000) || m.xid == 0)
				t_fail(__LINE__, "ts %lld xid %u",
				    (long long)m.ts, m.xid);
		}
		if (m.kind == 'C' && (m.ts != begin.ts || m.lsn != begin.lsn ||
		    m.end_lsn <= m.lsn))
			t_fail(__LINE__, "commit %lld %llx/%llx, begin %lld "
			    "%llx", (long long)m.ts, (unsigned long long)m.lsn,
			    (unsigned long long)m.end_lsn, (long long)begin.ts,
			    (unsigned long long)begin.lsn);
		check_truncations(p, len);
		free(p);
	}
	t_done();
}

struct real_case {
	const char *name;
	uint32_t relid;
	const char *table;	/* "nsp.rel" of a Relation */
	char replident;
	const char *cols;
	char old_kind;
	const char *old, *new;
	uint32_t relids[2];	/* of a Truncate */
	uint8_t flags;
};

#define RCASE(n, r, ...) { .name = (n), .relid = (r), __VA_ARGS__ }
#define BIG "t:<2240 c4ca4238>"	/* md5('1') || md5('2') || ... */

static const struct real_case real_cases[] = {
	RCASE("insert users 2 R", REAL_USERS, .table = "public.users",
	    .replident = 'd',
	    .cols = "*id:23|email:25|name:25|bio:25|active:16|seen:1184"),
	RCASE("insert users 3 I", REAL_USERS,
	    .new = "t:1|t:a@x.io|t:Ann|n|t:t|t:2024-01-02 03:04:05+00"),
	RCASE("insert users 4 I", REAL_USERS,
	    .new = "t:2|t:b@x.io|t:Bob|" BIG "|t:f|n"),
	/* The key did not change: no old row; bio stayed in TOAST. */
	RCASE("update email, bio unchanged 2 U", REAL_USERS,
	    .new = "t:2|t:b2@x.io|t:Bob|u|t:f|n"),
	RCASE("update key 2 U", REAL_USERS, .old_kind = 'K',
	    .old = "t:2|n|n|n|n|n", .new = "t:3|t:b2@x.io|t:Bob|u|t:f|n"),
	RCASE("delete users 2 D", REAL_USERS, .old_kind = 'K',
	    .old = "t:1|n|n|n|n|n"),
	RCASE("full 2 R", REAL_FULL_T, .table = "public.full_t",
	    .replident = 'f', .cols = "*id:23|*k:25|*ts:1114|*big:25"),
	RCASE("full 3 I", REAL_FULL_T,
	    .new = "t:1|t:k1|t:2024-01-02 03:04:05|" BIG),
	RCASE("full 5 U", REAL_FULL_T, .old_kind = 'O',
	    .old = "t:1|t:k1|t:2024-01-02 03:04:05|" BIG,
	    .new = "t:1|t:k1b|t:2024-01-02 03:04:05|u"),
	RCASE("full 6 D", REAL_FULL_T, .old_kind = 'O',
	    .old = "t:2|n|n|t:small"),
	/* After ALTER TABLE: name dropped, age added. */
	RCASE("alter users 2 R", REAL_USERS, .table = "public.users",
	    .replident = 'd',
	    .cols = "*id:23|email:25|bio:25|active:16|seen:1184|age:23"),
	RCASE("alter users 3 I", REAL_USERS,
	    .new = "t:4|t:d@x.io|n|n|n|t:40"),
	RCASE("uidx 2 R", REAL_UIDX, .table = "public.uidx", .replident = 'i',
	    .cols = "*a:23|*b:25|c:25"),
	RCASE("uidx 4 U", REAL_UIDX, .new = "t:1|t:b1|t:c2"),
	RCASE("uidx 5 U", REAL_UIDX, .old_kind = 'K', .old = "t:1|t:b1|n",
	    .new = "t:1|t:b2|t:c2"),
	RCASE("uidx 6 D", REAL_UIDX, .old_kind = 'K', .old = "t:1|t:b2|n"),
	/* The table named, then those of the cascade. */
	RCASE("truncate cascade 5 T", 0, .relids = { REAL_ORDERS, REAL_ITEMS },
	    .flags = 1),
	RCASE("truncate restart identity 3 T", 0, .relids = { REAL_USERS },
	    .flags = 2),
};

static void
test_real_cases(void **state)
{
	struct pgo_msg m;
	struct repr r;
	/* table: a Relation's name, a Truncate's relids */
	char err[256], table[256];

	for (size_t i = 0; i < sizeof(real_cases) / sizeof(*real_cases); i++) {
		const struct real_case *c = &real_cases[i];
		size_t len;
		unsigned char *p = pb_unhex(real(c->name)->hex, &len);

		tcase = c->name;
		if (pgo_parse(p, len, &m, err, sizeof(err)) != 0) {
			t_fail(__LINE__, "refused: %s", err);
			free(p);
			continue;
		}
		if (m.relid != c->relid || m.old_kind != c->old_kind)
			t_fail(__LINE__, "relid %u old_kind %c", m.relid,
			    m.old_kind ? m.old_kind : '0');
		if (m.kind == 'R') {
			snprintf(table, sizeof(table), "%s.%s", m.nspname,
			    m.relname);
			check_str(__LINE__, "table", table, c->table);
			check_str(__LINE__, "columns", cols_repr(&r, &m),
			    c->cols);
			if (m.replident != c->replident)
				t_fail(__LINE__, "replident %c", m.replident);
		}
		check_str(__LINE__, "old", tuple_repr(&r, &m.old), c->old);
		check_str(__LINE__, "new", tuple_repr(&r, &m.new), c->new);
		if (m.kind == 'T') {
			snprintf(table, sizeof(table), c->relids[1] ? "%u,%u" :
			    "%u", c->relids[0], c->relids[1]);
			check_str(__LINE__, "relids", relids_repr(&r, &m),
			    table);
			if (m.trunc_flags != c->flags)
				t_fail(__LINE__, "flags %u", m.trunc_flags);
		}
		free(p);
	}
	t_done();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_cases),
		cmocka_unit_test(test_parse_truncations),
		cmocka_unit_test(test_parse_err_sizes),
		cmocka_unit_test(test_builders),
		cmocka_unit_test(test_real_all),
		cmocka_unit_test(test_real_cases),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
