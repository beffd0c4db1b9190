/*
 * Builders of pgoutput messages for the unit tests of pgoutput.c and
 * wal_rel.c: Relation, Insert, Update and Delete messages put together
 * from tables of columns and values, and hex strings (the real messages
 * of pgoutput_real.h) turned into exact-size buffers, so that a read past
 * a message's end is caught.
 */
#ifndef PGINVAL_PGO_BUILD_H
#define PGINVAL_PGO_BUILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* One value of tuple data; kind 0 ends a list. */
struct pb_val {
	char kind;		/* 'n', 'u', 't', 'b' */
	const char *s;		/* 't', 'b' */
};

#define PB_N { 'n', NULL }
#define PB_U { 'u', NULL }
#define PB_T(s) { 't', (s) }
#define PB_B(s) { 'b', (s) }

/* One column of a Relation; a NULL name ends a list. */
struct pb_col {
	const char *name;
	uint32_t typid;
	bool key;
};

struct pb_msg {
	unsigned char b[16384];
	size_t n;
};

static inline void
pb_int(struct pb_msg *m, uint64_t v, size_t size)
{
	for (size_t i = size; i-- > 0 && m->n < sizeof(m->b);)
		m->b[m->n++] = (unsigned char)(v >> (8 * i));
}

static inline void
pb_bytes(struct pb_msg *m, const void *p, size_t n)
{
	if (n <= sizeof(m->b) - m->n) {
		memcpy(m->b + m->n, p, n);
		m->n += n;
	}
}

static inline void
pb_str(struct pb_msg *m, const char *s)
{
	pb_bytes(m, s, strlen(s) + 1);
}

static inline size_t
pb_nvals(const struct pb_val *v)
{
	size_t n = 0;

	while (v[n].kind != 0)
		n++;
	return n;
}

static inline void
pb_tuple(struct pb_msg *m, const struct pb_val *v)
{
	pb_int(m, pb_nvals(v), 2);
	for (; v->kind != 0; v++) {
		pb_int(m, (unsigned char)v->kind, 1);
		if (v->kind == 't' || v->kind == 'b') {
			pb_int(m, strlen(v->s), 4);
			pb_bytes(m, v->s, strlen(v->s));
		}
	}
}

static inline void
pb_relation(struct pb_msg *m, uint32_t relid, const char *nsp,
    const char *rel, char replident, const struct pb_col *c)
{
	size_t n = 0;

	while (c[n].name != NULL)
		n++;
	m->n = 0;
	pb_int(m, 'R', 1);
	pb_int(m, relid, 4);
	pb_str(m, nsp);
	pb_str(m, rel);
	pb_int(m, (unsigned char)replident, 1);
	pb_int(m, n, 2);
	for (; c->name != NULL; c++) {
		pb_int(m, c->key ? 1 : 0, 1);
		pb_str(m, c->name);
		pb_int(m, c->typid, 4);
		pb_int(m, UINT32_MAX, 4);
	}
}

/* An Insert ('I'), Update ('U') or Delete ('D'): old_kind 'K', 'O' or 0
 * (old NULL), new NULL for a Delete. */
static inline void
pb_change(struct pb_msg *m, char kind, uint32_t relid, char old_kind,
    const struct pb_val *old, const struct pb_val *new)
{
	m->n = 0;
	pb_int(m, (unsigned char)kind, 1);
	pb_int(m, relid, 4);
	if (old_kind != 0) {
		pb_int(m, (unsigned char)old_kind, 1);
		pb_tuple(m, old);
	}
	if (new != NULL) {
		pb_int(m, 'N', 1);
		pb_tuple(m, new);
	}
}

/* hex (spaces allowed) in a buffer of its exact size; *len its size. */
static inline unsigned char *
pb_unhex(const char *hex, size_t *len)
{
	unsigned char *out = malloc(strlen(hex) / 2 + 1);
	size_t n = 0;
	int hi = -1;

	if (out == NULL)
		abort();
	for (; *hex != '\0'; hex++) {
		int d = *hex >= '0' && *hex <= '9' ? *hex - '0' :
		    *hex >= 'a' && *hex <= 'f' ? *hex - 'a' + 10 :
		    *hex >= 'A' && *hex <= 'F' ? *hex - 'A' + 10 : -1;

		if (d < 0)
			continue;
		if (hi < 0) {
			hi = d;
		} else {
			out[n++] = (unsigned char)(hi << 4 | d);
			hi = -1;
		}
	}
	*len = n;
	/* Exactly n bytes, for the sanitizers. */
	unsigned char *exact = malloc(n ? n : 1);

	if (exact == NULL)
		abort();
	memcpy(exact, out, n);
	free(out);
	return exact;
}

/* An exact-size copy of a built message. */
static inline unsigned char *
pb_copy(const struct pb_msg *m)
{
	unsigned char *p = malloc(m->n ? m->n : 1);

	if (p == NULL)
		abort();
	memcpy(p, m->b, m->n);
	return p;
}

#endif
