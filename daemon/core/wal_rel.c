/*
 * The relations of a pgoutput stream and the watched tables of a wal-mode
 * channel, and the events their changes make. One sorted array holds an
 * entry per relation OID: what its last Relation message said (the name,
 * the replica identity, the columns) and what the map says is watched in
 * it. wal_rels_event() then picks the watched columns out of a change's
 * tuples, decides whether each old and new value can be known from what
 * the replica identity made PostgreSQL log, and rewrites the values'
 * text output into the text the triggers' to_jsonb() gives. A transaction
 * of a million rows streams through here one change at a time, so the
 * event is built in scratch space that is reused: once it has grown to
 * the widest row, an event allocates nothing.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/wal_rel.h"
#include "lib/buf.h"
#include "lib/xalloc.h"

/* The most bytes of watched values (old and new) that one change may
 * carry into a message: the outbox's default max_payload. */
#define WAL_MAX_VALUES (1024 * 1024)

struct rel_col {
	char *name;
	uint32_t typid;
	bool key;
};

struct watch_col {
	char *name;
	uint32_t typid;
	enum wal_class cls;
	long at;		/* its column in the relation, -1 if none */
};

struct wal_rel {
	uint32_t relid;
	char *table;		/* NULL until a Relation message came */
	char replident;
	struct rel_col *cols;
	size_t ncols;
	struct watch_col *watch;
	size_t nwatch;
	bool mapped;		/* watch[].at follows cols */
};

/* A watched column's values in one change, before their text is made. */
struct pick {
	const struct watch_col *w;
	const struct pgo_datum *old, *new;
};

struct wal_rels {
	struct wal_rel *rels;	/* sorted by relid */
	size_t n, cap;

	/* The scratch of wal_rels_event(). */
	struct pgo_datum *oldd, *newd;	/* by relation column */
	size_t dcap;
	struct pick *picks;
	struct row_col *cols;	/* the old image's, then the new one's */
	size_t pcap;
	struct buf text;
};

struct wal_rels *
wal_rels_new(void)
{
	return xcalloc(1, sizeof(struct wal_rels));
}

static void
rel_forget_cols(struct wal_rel *r)
{
	for (size_t i = 0; i < r->ncols; i++)
		free(r->cols[i].name);
	free(r->cols);
	free(r->table);
	r->cols = NULL;
	r->table = NULL;
	r->ncols = 0;
}

static void
rel_free(struct wal_rel *r)
{
	rel_forget_cols(r);
	for (size_t i = 0; i < r->nwatch; i++)
		free(r->watch[i].name);
	free(r->watch);
}

void
wal_rels_clear(struct wal_rels *rels)
{
	for (size_t i = 0; i < rels->n; i++)
		rel_free(&rels->rels[i]);
	rels->n = 0;
}

void
wal_rels_free(struct wal_rels *rels)
{
	if (rels == NULL)
		return;
	wal_rels_clear(rels);
	free(rels->rels);
	free(rels->oldd);
	free(rels->newd);
	free(rels->picks);
	free(rels->cols);
	buf_free(&rels->text);
	free(rels);
}

enum wal_class
wal_class_parse(const char *s)
{
	static const char *const names[] = {
		[WAL_CLASS_TEXT] = "text",
		[WAL_CLASS_BOOL] = "bool",
		[WAL_CLASS_TIMESTAMP] = "timestamp",
		[WAL_CLASS_TIMESTAMPTZ] = "timestamptz",
		[WAL_CLASS_TIMETZ] = "timetz",
	};

	for (size_t i = 0; s != NULL && i < sizeof(names) / sizeof(*names); i++)
		if (strcmp(s, names[i]) == 0)
			return (enum wal_class)i;
	return WAL_CLASS_UNSUPPORTED;
}

/* The index where relid is, or where it would go. */
static size_t
rels_pos(const struct wal_rels *rels, uint32_t relid)
{
	size_t lo = 0, hi = rels->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (rels->rels[mid].relid < relid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct wal_rel *
rels_find(const struct wal_rels *rels, uint32_t relid)
{
	size_t i = rels_pos(rels, relid);

	return i < rels->n && rels->rels[i].relid == relid ? &rels->rels[i] :
	    NULL;
}

static struct wal_rel *
rels_get(struct wal_rels *rels, uint32_t relid)
{
	size_t i = rels_pos(rels, relid);

	if (i < rels->n && rels->rels[i].relid == relid)
		return &rels->rels[i];
	if (rels->n == rels->cap) {
		rels->cap = rels->cap ? rels->cap * 2 : 16;
		rels->rels = xrealloc(rels->rels,
		    rels->cap * sizeof(*rels->rels));
	}
	memmove(&rels->rels[i + 1], &rels->rels[i],
	    (rels->n - i) * sizeof(*rels->rels));
	rels->n++;
	memset(&rels->rels[i], 0, sizeof(rels->rels[i]));
	rels->rels[i].relid = relid;
	return &rels->rels[i];
}

void
wal_rels_watch(struct wal_rels *rels, uint32_t relid, const char *col,
    uint32_t typid, enum wal_class cls)
{
	struct wal_rel *r = rels_get(rels, relid);
	struct watch_col *w = NULL;

	for (size_t i = 0; i < r->nwatch && w == NULL; i++)
		if (strcmp(r->watch[i].name, col) == 0)
			w = &r->watch[i];
	if (w == NULL) {
		r->watch = xrealloc(r->watch, (r->nwatch + 1) * sizeof(*w));
		w = &r->watch[r->nwatch++];
		w->name = xstrdup(col);
	}
	w->typid = typid;
	w->cls = cls;
	r->mapped = false;
}

int
wal_rels_relation(struct wal_rels *rels, const struct pgo_msg *m, char *err,
    size_t errlen)
{
	struct pgo_rel_col col;
	struct wal_rel *r;
	size_t off = 0, n = 0, n_name;
	int rc;

	/* Walked once to check it before anything is replaced. */
	while ((rc = pgo_rel_next(m, &off, &col)) == 1)
		n++;
	if (rc < 0 || n != m->ncols || m->nspname == NULL ||
	    m->relname == NULL) {
		snprintf(err, errlen, "the Relation message of relation %u has "
		    "malformed columns", m->relid);
		return -1;
	}
	r = rels_get(rels, m->relid);
	rel_forget_cols(r);
	n_name = strlen(m->nspname) + strlen(m->relname) + 2;
	r->table = xmalloc(n_name);
	snprintf(r->table, n_name, "%s.%s", m->nspname, m->relname);
	r->replident = m->replident;
	r->cols = xcalloc(n ? n : 1, sizeof(*r->cols));
	off = 0;
	while (r->ncols < n && pgo_rel_next(m, &off, &col) == 1) {
		r->cols[r->ncols].name = xstrdup(col.name);
		r->cols[r->ncols].typid = col.typid;
		r->cols[r->ncols++].key = col.key;
	}
	r->mapped = false;
	return 0;
}

const char *
wal_rels_table(const struct wal_rels *rels, uint32_t relid)
{
	const struct wal_rel *r = rels_find(rels, relid);

	return r != NULL ? r->table : NULL;
}

int
wal_rels_watched(const struct wal_rels *rels, uint32_t relid)
{
	const struct wal_rel *r = rels_find(rels, relid);

	return r != NULL && r->nwatch > 0;
}

static enum wal_event_result why_is(enum wal_event_result res, char *why,
    size_t whylen, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static enum wal_event_result
why_is(enum wal_event_result res, char *why, size_t whylen, const char *fmt,
    ...)
{
	va_list ap;

	if (whylen > 0) {
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return res;
}

/* Finds each watched column in the relation, once per Relation or watch. */
static void
rel_map(struct wal_rel *r)
{
	for (size_t i = 0; i < r->nwatch; i++) {
		r->watch[i].at = -1;
		for (size_t j = 0; j < r->ncols && r->watch[i].at < 0; j++)
			if (strcmp(r->watch[i].name, r->cols[j].name) == 0)
				r->watch[i].at = (long)j;
	}
	r->mapped = true;
}

static void
scratch_grow(struct wal_rels *rels, const struct wal_rel *r)
{
	if (rels->dcap < r->ncols) {
		rels->dcap = r->ncols;
		rels->oldd = xrealloc(rels->oldd,
		    rels->dcap * sizeof(*rels->oldd));
		rels->newd = xrealloc(rels->newd,
		    rels->dcap * sizeof(*rels->newd));
	}
	if (rels->pcap < r->nwatch) {
		rels->pcap = r->nwatch;
		rels->picks = xrealloc(rels->picks,
		    rels->pcap * sizeof(*rels->picks));
		rels->cols = xrealloc(rels->cols,
		    2 * rels->pcap * sizeof(*rels->cols));
	}
}

/* A tuple's columns into d[], which has one per column of the relation. */
static enum wal_event_result
read_tuple(const struct wal_rel *r, const struct pgo_tuple *t,
    struct pgo_datum *d, const char *which, char *why, size_t whylen)
{
	size_t off = 0, n = 0;

	while (t->ncols == r->ncols && n < r->ncols &&
	    pgo_tuple_next(t, &off, &d[n]) == 1)
		n++;
	if (t->ncols != r->ncols || n != r->ncols)
		return why_is(WAL_EVENT_BAD, why, whylen, "the %s row of a "
		    "change of %s has %u columns where its Relation message "
		    "has %zu: the stream is malformed", which, r->table,
		    (unsigned)t->ncols, r->ncols);
	return WAL_EVENT_OK;
}

/*
 * Whether a timestamp's text output is in the ISO form that wal_text()
 * rewrites: "YYYY-MM-DD HH:MM:SS..." (the year may be longer) or
 * [-]infinity. Another DateStyle in the decoding session gives another
 * form ("01/02/2024 04:04:05 CET"), which no rewriting can recover.
 */
static bool
iso_timestamp(const struct pgo_datum *d)
{
	static const char form[] = "-9-9 9:9:9";	/* 9: two digits */
	const char *s = d->val;
	size_t i = 0, n = d->len;

	if ((n == 8 && memcmp(s, "infinity", 8) == 0) ||
	    (n == 9 && memcmp(s, "-infinity", 9) == 0))
		return true;
	while (i < n && s[i] >= '0' && s[i] <= '9')
		i++;
	if (i < 4)
		return false;
	for (const char *f = form; *f != '\0'; f++) {
		if (*f != '9') {
			if (i >= n || s[i++] != *f)
				return false;
		} else if (n - i < 2 || s[i] < '0' || s[i] > '9' ||
		    s[i + 1] < '0' || s[i + 1] > '9') {
			return false;
		} else {
			i += 2;
		}
	}
	return true;
}

/* Whether a value cannot be known: 'u' with nothing to take it from,
 * binary, or a timestamp in another form than ISO. */
static bool
is_unknown(const struct watch_col *w, const struct pgo_datum *d)
{
	bool stamp = w->cls == WAL_CLASS_TIMESTAMP ||
	    w->cls == WAL_CLASS_TIMESTAMPTZ;

	return d->kind == 'u' || d->kind == 'b' ||
	    (d->kind == 't' && stamp && !iso_timestamp(d));
}

static enum wal_event_result
value_unknown(const struct wal_rel *r, const struct watch_col *w,
    const struct pgo_datum *d, char *why, size_t whylen)
{
	if (d->kind == 't')
		return why_is(WAL_EVENT_UNKNOWN, why, whylen, "watched column "
		    "\"%s\" of %s came in another form than ISO 8601: start "
		    "the stream with DateStyle ISO", w->name, r->table);
	if (d->kind == 'b')
		return why_is(WAL_EVENT_UNKNOWN, why, whylen, "watched column "
		    "\"%s\" of %s came in binary: start the stream without "
		    "the binary option", w->name, r->table);
	return why_is(WAL_EVENT_UNKNOWN, why, whylen, "watched column \"%s\" "
	    "of %s is an unchanged TOASTed value that the old row does not "
	    "carry: call pginval.watch() again, which sets the replica "
	    "identity", w->name, r->table);
}

/*
 * Picks the old and new value of each watched column the relation has.
 * PostgreSQL logs the old row whole ('O') under REPLICA IDENTITY FULL,
 * else the old key ('K', other columns sent as null) when the key changed
 * or holds TOASTed values, else nothing: then the key did not change, and
 * the old row is the new one as far as the key goes. A column out of the
 * key is known in the old row only from an 'O' image, and an unchanged
 * TOASTed new value ('u') only from the old row.
 */
static enum wal_event_result
pick_values(struct wal_rels *rels, const struct wal_rel *r,
    const struct pgo_msg *m, size_t *npicks, char *why, size_t whylen)
{
	bool has_old = m->old_kind != 0;
	size_t n = 0;

	for (size_t i = 0; i < r->nwatch; i++) {
		const struct watch_col *w = &r->watch[i];
		const struct pgo_datum *od = NULL, *nd = NULL;
		bool in_key;

		if (w->at < 0)
			continue;
		in_key = r->replident == 'f' || r->cols[w->at].key;
		if (m->old_kind != 'O' && !in_key &&
		    (has_old || m->kind == 'U'))
			return why_is(WAL_EVENT_UNKNOWN, why, whylen, "the "
			    "replica identity of %s does not cover watched "
			    "column \"%s\": call pginval.watch() again, which "
			    "sets it", r->table, w->name);
		if (has_old)
			od = &rels->oldd[w->at];
		if (m->kind != 'D')
			nd = &rels->newd[w->at];
		if (nd != NULL && nd->kind == 'u' && od != NULL)
			nd = od;
		if (nd != NULL && is_unknown(w, nd))
			return value_unknown(r, w, nd, why, whylen);
		if (od != NULL && is_unknown(w, od))
			return value_unknown(r, w, od, why, whylen);
		rels->picks[n].w = w;
		rels->picks[n].old = od;
		rels->picks[n++].new = nd;
	}
	*npicks = n;
	return WAL_EVENT_OK;
}

/*
 * Appends the triggers' text of a value whose text output is s[0..n):
 * to_jsonb() writes booleans as true and false, and timestamps in XSD
 * form, with 'T' between date and time and minutes in every zone offset
 * ("+05" becomes "+05:00"; "+05:30", "+05:17:32", " BC" and infinity stay
 * as they are). timetz and the other types keep their text output.
 */
static void
wal_text(struct buf *b, enum wal_class cls, const char *s, size_t n)
{
	const char *sp;
	size_t i, z;

	if (cls == WAL_CLASS_BOOL && n == 1 && (s[0] == 't' || s[0] == 'f')) {
		buf_adds(b, s[0] == 't' ? "true" : "false");
		return;
	}
	if ((cls != WAL_CLASS_TIMESTAMP && cls != WAL_CLASS_TIMESTAMPTZ) ||
	    (sp = memchr(s, ' ', n)) == NULL) {
		buf_add(b, s, n);
		return;
	}
	i = (size_t)(sp - s);
	buf_add(b, s, i);
	buf_addc(b, 'T');
	i++;
	if (cls == WAL_CLASS_TIMESTAMPTZ) {
		for (z = i; z < n && s[z] != '+' && s[z] != '-'; z++)
			;
		if (z + 3 <= n && (z + 3 == n || s[z + 3] == ' ')) {
			buf_add(b, s + i, z + 3 - i);
			buf_adds(b, ":00");
			i = z + 3;
		}
	}
	buf_add(b, s + i, n - i);
}

/* One image's column: its text, NUL-terminated, in rels->text. */
static void
fill_col(struct buf *text, struct row_col *c, const struct watch_col *w,
    const struct pgo_datum *d)
{
	size_t start = text->len;

	c->name = w->name;
	c->num[0] = '\0';
	if (d->kind == 'n') {
		c->val = NULL;
		c->len = 0;
		return;
	}
	wal_text(text, w->cls, d->val, d->len);
	c->len = text->len - start;
	buf_addc(text, '\0');
	c->val = text->data + start;
}

static void
fill_event(struct wal_rels *rels, const struct wal_rel *r,
    const struct pgo_msg *m, size_t n, int64_t ts, struct event *ev)
{
	struct row_col *oc = rels->cols, *nc = rels->cols + rels->pcap;
	size_t need = 0;
	bool same = m->kind == 'U';

	/* Room for every value first, so that no value's text moves: a
	 * rewritten text is at most 4 bytes longer ("f": "false"). */
	for (size_t i = 0; i < n; i++) {
		if (rels->picks[i].old != NULL)
			need += rels->picks[i].old->len + 5;
		if (rels->picks[i].new != NULL)
			need += rels->picks[i].new->len + 5;
	}
	buf_reset(&rels->text);
	buf_reserve(&rels->text, need);
	memset(ev, 0, sizeof(*ev));
	ev->op = m->kind == 'I' ? EVENT_INSERT : m->kind == 'U' ?
	    EVENT_UPDATE : EVENT_DELETE;
	ev->table = r->table;
	ev->ts = ts;
	/* An Update that sent no old value of a watched column: the old
	 * image is the new one, shared (message.c and rules.c render it
	 * once, as event_share_images() arranges for equal ones). */
	for (size_t i = 0; i < n && same; i++)
		same = rels->picks[i].old == NULL;
	for (size_t i = 0; i < n; i++) {
		const struct pick *p = &rels->picks[i];

		if (same)
			;
		else if (m->kind == 'U')
			fill_col(&rels->text, &oc[i], p->w,
			    p->old != NULL ? p->old : p->new);
		else if (m->kind == 'D')
			fill_col(&rels->text, &oc[i], p->w, p->old);
		if (m->kind != 'D')
			fill_col(&rels->text, &nc[i], p->w, p->new);
	}
	ev->old.present = m->kind != 'I';
	ev->old.n = ev->old.present ? n : 0;
	ev->old.cols = ev->old.present ? (same ? nc : oc) : NULL;
	ev->new.present = m->kind != 'D';
	ev->new.n = ev->new.present ? n : 0;
	ev->new.cols = ev->new.present ? nc : NULL;
	if (!same)
		event_share_images(ev);	/* old values sent, and equal */
}

/*
 * Whether the watched values fit in a message. The triggers send a change
 * whose payload would reach 8000 bytes (1 MB in the outbox) as an event of
 * the whole table; here a row's watched values could be as large as a
 * value can be (1 GB), and the message made from them would be refused by
 * Redis or end every subscriber's link (its output buffer limit). So a
 * change whose watched values pass WAL_MAX_VALUES is a reset of the table.
 */
static enum wal_event_result
check_size(const struct wal_rels *rels, const struct wal_rel *r, size_t n,
    char *why, size_t whylen)
{
	size_t total = 0;

	for (size_t i = 0; i < n; i++) {
		if (rels->picks[i].old != NULL)
			total += rels->picks[i].old->len;
		if (rels->picks[i].new != NULL)
			total += rels->picks[i].new->len;
	}
	if (total <= WAL_MAX_VALUES)
		return WAL_EVENT_OK;
	return why_is(WAL_EVENT_UNKNOWN, why, whylen, "the watched values of a "
	    "change of %s hold %zu bytes, more than a message carries (%d): "
	    "its keys are reset instead", r->table, total, WAL_MAX_VALUES);
}

/* Whether the map still describes r, and its types can be rendered. */
static enum wal_event_result
check_map(struct wal_rel *r, char *why, size_t whylen)
{
	if (r->nwatch == 0)
		return why_is(WAL_EVENT_STALE, why, whylen, "%s is in the "
		    "publication but not among the watched tables: the map is "
		    "older than the stream; read pginval.wal_columns() again",
		    r->table);
	if (!r->mapped)
		rel_map(r);
	for (size_t i = 0; i < r->nwatch; i++) {
		const struct watch_col *w = &r->watch[i];

		if (w->at >= 0 && r->cols[w->at].typid != w->typid)
			return why_is(WAL_EVENT_STALE, why, whylen, "watched "
			    "column \"%s\" of %s is of type %u in the stream "
			    "but %u in the map: read pginval.wal_columns() "
			    "again", w->name, r->table, r->cols[w->at].typid,
			    w->typid);
	}
	for (size_t i = 0; i < r->nwatch; i++) {
		const struct watch_col *w = &r->watch[i];

		if (w->at >= 0 && w->cls == WAL_CLASS_UNSUPPORTED)
			return why_is(WAL_EVENT_UNKNOWN, why, whylen, "watched "
			    "column \"%s\" of %s has a type whose text the WAL "
			    "does not give as the triggers do: its keys are "
			    "reset on every change; watch it in notify or "
			    "durable mode instead", w->name, r->table);
	}
	return WAL_EVENT_OK;
}

enum wal_event_result
wal_rels_event(struct wal_rels *rels, const struct pgo_msg *m, int64_t ts,
    struct event *ev, char *why, size_t whylen)
{
	struct wal_rel *r = rels_find(rels, m->relid);
	enum wal_event_result res;
	size_t n = 0;

	if (r == NULL || r->table == NULL)
		return why_is(WAL_EVENT_BAD, why, whylen, "a change of "
		    "relation %u came before its Relation message: the stream "
		    "is malformed", m->relid);
	if ((m->kind != 'I' && m->kind != 'U' && m->kind != 'D') ||
	    m->old.present != (m->old_kind != 0) ||
	    m->new.present != (m->kind != 'D') ||
	    (m->kind == 'I' && m->old_kind != 0) ||
	    (m->kind == 'D' && m->old_kind == 0))
		return why_is(WAL_EVENT_BAD, why, whylen, "a message '%c' "
		    "about %s is no Insert, Update or Delete that pgo_parse() "
		    "read", m->kind, r->table);
	if ((res = check_map(r, why, whylen)) != WAL_EVENT_OK)
		return res;
	scratch_grow(rels, r);
	if (m->old_kind != 0 && (res = read_tuple(r, &m->old, rels->oldd,
	    "old", why, whylen)) != WAL_EVENT_OK)
		return res;
	if (m->kind != 'D' && (res = read_tuple(r, &m->new, rels->newd,
	    "new", why, whylen)) != WAL_EVENT_OK)
		return res;
	if ((res = pick_values(rels, r, m, &n, why, whylen)) != WAL_EVENT_OK)
		return res;
	if ((res = check_size(rels, r, n, why, whylen)) != WAL_EVENT_OK)
		return res;
	fill_event(rels, r, m, n, ts, ev);
	if (whylen > 0)
		why[0] = '\0';
	return WAL_EVENT_OK;
}
