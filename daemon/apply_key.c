/*
 * Key helpers for pginval apply: marker names, hash slots and template
 * matching. Everything here is a pure function of its input, so that the
 * unit test can drive it with tables of cases, and so that the recipes in
 * the README can repeat the marker rule byte for byte.
 */
#include "apply_key.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MATCH_BUDGET 100000	/* steps before a match counts as ambiguous */

void
apply_strs_add(struct apply_strs *s, const char *p, size_t len)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 8;
		s->off = xrealloc(s->off, s->cap * sizeof(*s->off));
		s->len = xrealloc(s->len, s->cap * sizeof(*s->len));
	}
	s->off[s->n] = s->data.len;
	s->len[s->n] = len;
	s->n++;
	buf_add(&s->data, p, len);
	buf_addc(&s->data, '\0');
}

const char *
apply_strs_get(const struct apply_strs *s, size_t i, size_t *len)
{
	if (len != NULL)
		*len = s->len[i];
	return s->data.data + s->off[i];
}

void
apply_strs_reset(struct apply_strs *s)
{
	s->n = 0;
	buf_reset(&s->data);
}

void
apply_strs_free(struct apply_strs *s)
{
	buf_free(&s->data);
	free(s->off);
	free(s->len);
	memset(s, 0, sizeof(*s));
}

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), the checksum
 * Redis Cluster uses for slots. */
static uint16_t
apply_crc16(const char *p, size_t len)
{
	uint16_t crc = 0;

	for (size_t i = 0; i < len; i++) {
		crc ^= (uint16_t)((unsigned char)p[i] << 8);
		for (int b = 0; b < 8; b++)
			crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) :
			    (uint16_t)(crc << 1);
	}
	return crc;
}

/* Finds the hash tag of key: true with *tag and *taglen when it has one. */
static bool
apply_key_tag(const char *key, size_t len, const char **tag, size_t *taglen)
{
	const char *open = memchr(key, '{', len), *close;

	if (open == NULL)
		return false;
	close = memchr(open + 1, '}', len - (size_t)(open + 1 - key));
	if (close == NULL || close == open + 1)
		return false;
	*tag = open + 1;
	*taglen = (size_t)(close - open - 1);
	return true;
}

unsigned
apply_key_slot(const char *key, size_t len)
{
	const char *tag;
	size_t taglen;

	if (apply_key_tag(key, len, &tag, &taglen))
		return apply_crc16(tag, taglen) & 16383;
	return apply_crc16(key, len) & 16383;
}

void
apply_marker_name(const char *key, size_t len, struct buf *out)
{
	const char *tag;
	size_t taglen;

	buf_adds(out, APPLY_MARKER_PREFIX "{");
	if (apply_key_tag(key, len, &tag, &taglen)) {
		buf_add(out, tag, taglen);
		buf_adds(out, "}:");
		buf_add(out, key, len);
	} else if (len > 0 && memchr(key, '}', len) == NULL) {
		buf_add(out, key, len);
		buf_addc(out, '}');
	} else {
		/* A tag cannot hold '}', nor be empty: borrow one that lands
		 * in the same slot. Every slot has a number below 100000. */
		unsigned want = apply_key_slot(key, len);
		char num[24];
		int n = 0;

		for (unsigned long i = 0;; i++) {
			n = snprintf(num, sizeof(num), "%lu", i);
			if ((apply_crc16(num, (size_t)n) & 16383) == want)
				break;
		}
		buf_add(out, num, (size_t)n);
		buf_adds(out, "}:");
		buf_add(out, key, len);
	}
}

void
apply_tpl_init(struct apply_tpl *t, const struct rule_set *rs, size_t i)
{
	char *pat = rules_pattern(rs, i);
	struct buf lit = { 0 };

	memset(t, 0, sizeof(*t));
	/* rules_pattern() escapes glob characters with a backslash and
	 * writes each column as '*'. */
	for (const char *p = pat ? pat : ""; *p != '\0'; p++) {
		if (*p == '\\' && p[1] != '\0') {
			buf_addc(&lit, *++p);
		} else if (*p == '*') {
			apply_strs_add(&t->lits, lit.data ? lit.data : "", lit.len);
			buf_reset(&lit);
			t->ncols++;
		} else {
			buf_addc(&lit, *p);
		}
	}
	apply_strs_add(&t->lits, lit.data ? lit.data : "", lit.len);
	buf_free(&lit);
	free(pat);
}

void
apply_tpl_free(struct apply_tpl *t)
{
	apply_strs_free(&t->lits);
	t->ncols = 0;
}

struct match {
	const struct apply_tpl *t;
	const char *key;
	size_t len;
	size_t *ends;		/* where each column's value ends */
	size_t *best;		/* the first complete split found */
	int found;
	unsigned long steps;
};

/* Counts the splits of key[pos..) where column col starts at pos. */
static void
apply_tpl_split(struct match *m, size_t col, size_t pos)
{
	size_t litlen;
	const char *lit = apply_strs_get(&m->t->lits, col + 1, &litlen);
	bool last = col + 1 == m->t->ncols;

	for (size_t end = pos; end <= m->len && m->found < 2; end++) {
		if (++m->steps > MATCH_BUDGET) {
			m->found = 2;
			return;
		}
		if (m->len - end < litlen || memcmp(m->key + end, lit, litlen) != 0)
			continue;
		m->ends[col] = end;
		if (last) {
			if (end + litlen != m->len)
				continue;
			if (m->found++ == 0)
				memcpy(m->best, m->ends, m->t->ncols * sizeof(size_t));
		} else {
			apply_tpl_split(m, col + 1, end + litlen);
		}
	}
}

int
apply_tpl_match(const struct apply_tpl *t, const char *key, size_t len,
    struct apply_strs *values)
{
	struct match m = { .t = t, .key = key, .len = len };
	size_t litlen, pos;
	const char *lit = apply_strs_get(&t->lits, 0, &litlen);

	apply_strs_reset(values);
	if (len < litlen || memcmp(key, lit, litlen) != 0)
		return 0;
	if (t->ncols == 0)
		return len == litlen ? 1 : 0;
	m.ends = xcalloc(t->ncols, sizeof(size_t));
	m.best = xcalloc(t->ncols, sizeof(size_t));
	apply_tpl_split(&m, 0, litlen);
	if (m.found == 1) {
		pos = litlen;
		for (size_t c = 0; c < t->ncols; c++) {
			apply_strs_add(values, key + pos, m.best[c] - pos);
			apply_strs_get(&t->lits, c + 1, &litlen);
			pos = m.best[c] + litlen;
		}
	}
	free(m.ends);
	free(m.best);
	return m.found;
}
