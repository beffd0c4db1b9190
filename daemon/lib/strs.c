/*
 * A list of byte strings, kept in order with their duplicates, each
 * stored with a trailing NUL. Knows nothing of pginval.
 */
#include "lib/strs.h"
#include "lib/xalloc.h"

#include <stdlib.h>
#include <string.h>

void
strs_add(struct strs *s, const char *p, size_t len)
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
strs_get(const struct strs *s, size_t i, size_t *len)
{
	if (len != NULL)
		*len = s->len[i];
	return s->data.data + s->off[i];
}

void
strs_reset(struct strs *s)
{
	s->n = 0;
	buf_reset(&s->data);
}

void
strs_free(struct strs *s)
{
	buf_free(&s->data);
	free(s->off);
	free(s->len);
	memset(s, 0, sizeof(*s));
}
