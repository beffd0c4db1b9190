/*
 * Fuzzing of pgo_parse() and of the events wal_rels_event() makes.
 *
 * Each input is one pgoutput message, in a buffer of exactly its size.
 * Before it, the relations of the real session of tests/unit/
 * pgoutput_real.h (whose messages are the seed corpus) are described and
 * watched, every column but those of public.orders, with the class its
 * type has. A parsed message is walked whole, and then:
 *   - an Insert, Update or Delete becomes an event;
 *   - a Relation replaces what was known of its table, and every real
 *     change of the session is replayed against it;
 *   - a Truncate's relations are looked up.
 * Every event is read whole: each value of each image, and its
 * terminator.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/pgoutput.h"
#include "core/wal_rel.h"
#include "../unit/pgoutput_real.h"

#define NREAL (sizeof(real_msgs) / sizeof(*real_msgs))

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct wal_rels *rels;
static struct pgo_msg real[NREAL];
static unsigned char *real_bytes[NREAL];
static volatile unsigned sink;

static unsigned char *
unhex(const char *hex, size_t *len)
{
	size_t n = strlen(hex) / 2;
	unsigned char *p = malloc(n ? n : 1);

	if (p == NULL)
		abort();
	for (size_t i = 0; i < n; i++) {
		char byte[3] = { hex[2 * i], hex[2 * i + 1], '\0' };

		p[i] = (unsigned char)strtoul(byte, NULL, 16);
	}
	*len = n;
	return p;
}

static enum wal_class
class_of(uint32_t typid)
{
	switch (typid) {
	case 16:
		return WAL_CLASS_BOOL;
	case 1114:
		return WAL_CLASS_TIMESTAMP;
	case 1184:
		return WAL_CLASS_TIMESTAMPTZ;
	case 1266:
		return WAL_CLASS_TIMETZ;
	case 23:
	case 25:
		return WAL_CLASS_TEXT;
	default:
		return WAL_CLASS_UNSUPPORTED;
	}
}

/* Walks a parsed message whole: pgo_parse() vouched for it. */
static void
walk(const struct pgo_msg *m)
{
	const struct pgo_tuple *tuples[2] = { &m->old, &m->new };
	struct pgo_rel_col col;
	struct pgo_datum d;
	size_t off = 0, n = 0;
	int rc;

	if (m->kind == 'R') {
		while ((rc = pgo_rel_next(m, &off, &col)) == 1)
			n++, sink += (unsigned)strlen(col.name);
		if (rc != 0 || n != m->ncols)
			abort();
	}
	for (int t = 0; t < 2; t++) {
		if (!tuples[t]->present)
			continue;
		off = n = 0;
		while ((rc = pgo_tuple_next(tuples[t], &off, &d)) == 1) {
			n++;
			for (size_t i = 0; i < d.len; i++)
				sink += (unsigned char)d.val[i];
		}
		if (rc != 0 || n != tuples[t]->ncols)
			abort();
	}
	for (uint32_t i = 0; m->kind == 'T' && i < m->nrelids; i++)
		if (wal_rels_table(rels, pgo_trunc_relid(m, i)) != NULL)
			sink++;
}

static void
event(const struct pgo_msg *m)
{
	const struct row_image *imgs[2];
	struct event ev;
	char why[256];

	why[0] = '\0';
	if (wal_rels_event(rels, m, 1, &ev, why, sizeof(why)) != WAL_EVENT_OK) {
		if (why[0] == '\0' || memchr(why, '\0', sizeof(why)) == NULL)
			abort();
		return;
	}
	if (ev.table == NULL || ev.ts != 1)
		abort();
	imgs[0] = &ev.old;
	imgs[1] = &ev.new;
	for (int i = 0; i < 2; i++)
		for (size_t c = 0; imgs[i]->present && c < imgs[i]->n; c++) {
			const struct row_col *col = &imgs[i]->cols[c];

			sink += (unsigned)strlen(col->name);
			for (size_t k = 0; col->val && k < col->len; k++)
				sink += (unsigned char)col->val[k];
			if (col->val != NULL && col->val[col->len] != '\0')
				abort();
		}
}

/* The real session's relations, described and watched. */
static void
setup(void)
{
	struct pgo_rel_col col;
	char err[256];

	wal_rels_clear(rels);
	for (size_t i = 0; i < NREAL; i++) {
		size_t off = 0;

		if (real[i].kind != 'R')
			continue;
		if (wal_rels_relation(rels, &real[i], err, sizeof(err)) != 0)
			abort();
		while (real[i].relid != REAL_ORDERS &&
		    pgo_rel_next(&real[i], &off, &col) == 1)
			wal_rels_watch(rels, real[i].relid, col.name, col.typid,
			    class_of(col.typid));
	}
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[256];

	rels = wal_rels_new();
	for (size_t i = 0; i < NREAL; i++) {
		size_t len;

		real_bytes[i] = unhex(real_msgs[i].hex, &len);
		if (pgo_parse(real_bytes[i], len, &real[i], err, sizeof(err)))
			abort();
	}
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *p = malloc(size ? size : 1);
	struct pgo_msg m;
	char err[256];

	if (p == NULL)
		abort();
	memcpy(p, data, size);
	setup();
	err[0] = '\0';
	if (pgo_parse(p, size, &m, err, sizeof(err)) != 0) {
		if (err[0] == '\0')
			abort();
		free(p);
		return 0;
	}
	walk(&m);
	if (m.kind == 'I' || m.kind == 'U' || m.kind == 'D') {
		event(&m);
	} else if (m.kind == 'R') {
		if (wal_rels_relation(rels, &m, err, sizeof(err)) != 0)
			abort();
		for (size_t i = 0; i < NREAL; i++)
			if (real[i].kind == 'I' || real[i].kind == 'U' ||
			    real[i].kind == 'D')
				event(&real[i]);
	}
	free(p);
	return 0;
}
