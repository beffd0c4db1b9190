/*
 * The parser of pgoutput's messages (protocol version 1), the logical
 * replication stream of a wal-mode channel. Each message is read in one
 * pass with a bounded cursor: every integer, string, count and length is
 * checked against the bytes that are there, and a message must end where
 * its last field does. Strings, column lists and tuple data are left in
 * place and walked later with pgo_rel_next() and pgo_tuple_next(), whose
 * walks pgo_parse() has already made once, so that a parsed message can be
 * trusted by its readers. The layout is that of PostgreSQL's
 * src/backend/replication/logical/proto.c; integers are big-endian.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/pgoutput.h"

struct cursor {
	const unsigned char *p;
	size_t len, off;
};

static int bad(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
bad(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static uint64_t
get_be(const unsigned char *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* The next n-byte integer; -1 when fewer than n bytes remain. */
static int
cur_int(struct cursor *c, size_t n, uint64_t *v)
{
	if (c->len - c->off < n)
		return -1;
	*v = get_be(c->p + c->off, n);
	c->off += n;
	return 0;
}

static int
cur_u8(struct cursor *c, char *v)
{
	uint64_t x;

	if (cur_int(c, 1, &x) < 0)
		return -1;
	*v = (char)x;
	return 0;
}

static int
cur_u32(struct cursor *c, uint32_t *v)
{
	uint64_t x;

	if (cur_int(c, 4, &x) < 0)
		return -1;
	*v = (uint32_t)x;
	return 0;
}

/* A NUL-terminated string; -1 when it has no terminator. */
static int
cur_str(struct cursor *c, const char **s)
{
	const unsigned char *nul;

	nul = memchr(c->p + c->off, '\0', c->len - c->off);
	if (nul == NULL)
		return -1;
	*s = (const char *)(c->p + c->off);
	c->off = (size_t)(nul - c->p) + 1;
	return 0;
}

/* PostgreSQL's timestamps count from 2000-01-01; ours from 1970. */
static int64_t
unix_us(uint64_t pg)
{
	int64_t t = (int64_t)pg;

	return t > INT64_MAX - PGO_EPOCH_US ? INT64_MAX : t + PGO_EPOCH_US;
}

/* One column of tuple data; 0, -1 when truncated, -2 for an unknown kind. */
static int
tuple_col(struct cursor *c, struct pgo_datum *d)
{
	uint32_t n;

	if (cur_u8(c, &d->kind) < 0)
		return -1;
	d->val = NULL;
	d->len = 0;
	switch (d->kind) {
	case 'n':
	case 'u':
		return 0;
	case 't':
	case 'b':
		if (cur_u32(c, &n) < 0 || n > c->len - c->off)
			return -1;
		d->val = (const char *)(c->p + c->off);
		d->len = n;
		c->off += n;
		return 0;
	default:
		return -2;
	}
}

/* The tuple data at the cursor: its count, then each column. */
static int
parse_tuple(struct cursor *c, struct pgo_tuple *t, const char *what,
    char *err, size_t errlen)
{
	struct pgo_datum d;
	uint64_t n;
	size_t start;
	int rc;

	if (cur_int(c, 2, &n) < 0)
		return bad(err, errlen, "%s tuple: truncated before its column "
		    "count", what);
	start = c->off;
	for (uint64_t i = 0; i < n; i++) {
		if ((rc = tuple_col(c, &d)) == -2)
			return bad(err, errlen, "%s tuple: column %u of %u has "
			    "the unknown kind 0x%02x", what, (unsigned)i + 1,
			    (unsigned)n, (unsigned char)d.kind);
		if (rc < 0)
			return bad(err, errlen, "%s tuple: truncated in column "
			    "%u of %u", what, (unsigned)i + 1, (unsigned)n);
	}
	t->present = true;
	t->ncols = (uint16_t)n;
	t->p = c->p + start;
	t->len = c->off - start;
	return 0;
}

/* One column of a Relation message. */
static int
rel_col(struct cursor *c, struct pgo_rel_col *col)
{
	char flags;
	uint32_t typmod;

	if (cur_u8(c, &flags) < 0 || cur_str(c, &col->name) < 0 ||
	    cur_u32(c, &col->typid) < 0 || cur_u32(c, &typmod) < 0)
		return -1;
	col->key = (flags & 1) != 0;
	col->typmod = (int32_t)typmod;
	return 0;
}

static int
parse_relation(struct cursor *c, struct pgo_msg *m, char *err, size_t errlen)
{
	struct pgo_rel_col col;
	uint64_t n;

	if (cur_u32(c, &m->relid) < 0 || cur_str(c, &m->nspname) < 0 ||
	    cur_str(c, &m->relname) < 0 || cur_u8(c, &m->replident) < 0 ||
	    cur_int(c, 2, &n) < 0)
		return bad(err, errlen, "Relation: truncated before its "
		    "columns");
	m->ncols = (uint16_t)n;
	m->cols = c->p + c->off;
	for (uint64_t i = 0; i < n; i++)
		if (rel_col(c, &col) < 0)
			return bad(err, errlen, "Relation %u: truncated in "
			    "column %u of %u", m->relid, (unsigned)i + 1,
			    (unsigned)n);
	m->colslen = (size_t)(c->p + c->off - m->cols);
	return 0;
}

/* Insert, Update and Delete: the relation, then tagged tuples. */
static int
parse_change(struct cursor *c, struct pgo_msg *m, char *err, size_t errlen)
{
	const char *what = m->kind == 'I' ? "Insert" :
	    m->kind == 'U' ? "Update" : "Delete";
	char tag;

	if (cur_u32(c, &m->relid) < 0 || cur_u8(c, &tag) < 0)
		return bad(err, errlen, "%s: truncated before its tuple", what);
	if (m->kind != 'I' && (tag == 'K' || tag == 'O')) {
		m->old_kind = tag;
		if (parse_tuple(c, &m->old, what, err, errlen) < 0)
			return -1;
		if (m->kind == 'D')
			return 0;
		if (cur_u8(c, &tag) < 0)
			return bad(err, errlen, "Update: truncated after its "
			    "old tuple");
	} else if (m->kind == 'D') {
		return bad(err, errlen, "Delete: tuple tag 0x%02x, expected "
		    "'K' or 'O'", (unsigned char)tag);
	}
	if (tag != 'N')
		return bad(err, errlen, "%s: tuple tag 0x%02x, expected 'N'",
		    what, (unsigned char)tag);
	return parse_tuple(c, &m->new, what, err, errlen);
}

static int
parse_truncate(struct cursor *c, struct pgo_msg *m, char *err, size_t errlen)
{
	char flags;

	if (cur_u32(c, &m->nrelids) < 0 || cur_u8(c, &flags) < 0)
		return bad(err, errlen, "Truncate: truncated before its "
		    "relations");
	m->trunc_flags = (uint8_t)flags;
	if ((c->len - c->off) / 4 < m->nrelids)
		return bad(err, errlen, "Truncate: %u relations announced, "
		    "room for %zu", m->nrelids, (c->len - c->off) / 4);
	m->relids = c->p + c->off;
	c->off += (size_t)m->nrelids * 4;
	return 0;
}

/* A logical decoding message (pg_logical_emit_message()): flags, LSN,
 * prefix, then the content with its length. */
static int
parse_message(struct cursor *c, struct pgo_msg *m, char *err, size_t errlen)
{
	char flags;
	uint64_t lsn;
	uint32_t n;

	if (cur_u8(c, &flags) < 0 || cur_int(c, 8, &lsn) < 0 ||
	    cur_str(c, &m->prefix) < 0 || cur_u32(c, &n) < 0)
		return bad(err, errlen, "Message: truncated before its content");
	if (c->len - c->off < n)
		return bad(err, errlen, "Message: %u bytes announced, %zu there",
		    n, c->len - c->off);
	m->transactional = (flags & 1) != 0;
	m->lsn = lsn;
	m->content = (const char *)c->p + c->off;
	m->content_len = n;
	c->off += n;
	return 0;
}

int
pgo_parse(const unsigned char *p, size_t len, struct pgo_msg *m, char *err,
    size_t errlen)
{
	struct cursor c = { p, len, 1 };
	uint64_t lsn, ts, xid;
	char flags;
	int rc = 0;

	memset(m, 0, sizeof(*m));
	if (len == 0)
		return bad(err, errlen, "empty message");
	m->kind = (char)p[0];
	switch (m->kind) {
	case 'B':
		if (cur_int(&c, 8, &lsn) < 0 || cur_int(&c, 8, &ts) < 0 ||
		    cur_int(&c, 4, &xid) < 0)
			return bad(err, errlen, "Begin: truncated (%zu bytes, "
			    "21 expected)", len);
		m->lsn = lsn;
		m->ts = unix_us(ts);
		m->xid = (uint32_t)xid;
		break;
	case 'C':
		if (cur_u8(&c, &flags) < 0 || cur_int(&c, 8, &lsn) < 0 ||
		    cur_int(&c, 8, &m->end_lsn) < 0 || cur_int(&c, 8, &ts) < 0)
			return bad(err, errlen, "Commit: truncated (%zu bytes, "
			    "26 expected)", len);
		m->lsn = lsn;
		m->ts = unix_us(ts);
		break;
	case 'R':
		rc = parse_relation(&c, m, err, errlen);
		break;
	case 'I':
	case 'U':
	case 'D':
		rc = parse_change(&c, m, err, errlen);
		break;
	case 'T':
		rc = parse_truncate(&c, m, err, errlen);
		break;
	case 'M':
		rc = parse_message(&c, m, err, errlen);
		break;
	default:
		/* Origin, Type, and whatever else: not ours. */
		return 0;
	}
	if (rc < 0)
		return -1;
	if (c.off != len)
		return bad(err, errlen, "message '%c': %zu unexpected bytes "
		    "after its last field", m->kind, len - c.off);
	return 0;
}

int
pgo_rel_next(const struct pgo_msg *m, size_t *off, struct pgo_rel_col *col)
{
	struct cursor c = { m->cols, m->colslen, *off };

	if (c.off >= c.len)
		return c.off == c.len ? 0 : -1;
	if (rel_col(&c, col) < 0)
		return -1;
	*off = c.off;
	return 1;
}

int
pgo_tuple_next(const struct pgo_tuple *t, size_t *off, struct pgo_datum *d)
{
	struct cursor c = { t->p, t->len, *off };

	if (c.off >= c.len)
		return c.off == c.len ? 0 : -1;
	if (tuple_col(&c, d) < 0)
		return -1;
	*off = c.off;
	return 1;
}

uint32_t
pgo_trunc_relid(const struct pgo_msg *m, uint32_t i)
{
	return (uint32_t)get_be(m->relids + (size_t)i * 4, 4);
}
