/*
 * Key templates. A template compiles to a list of segments, each either
 * literal bytes or a column name; rendering concatenates them with the
 * row's values, byte for byte, so any value (spaces, colons, braces,
 * newlines, UTF-8) makes the same key the application would build.
 */
#include "rules.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct segment {
	char *text;		/* literal bytes, or the column name */
	size_t len;
	int is_column;
};

struct template {
	struct segment *segs;
	size_t nsegs;
};

struct rule_set {
	struct template *tpls;
	size_t ntpls;
	char *columns;
};

static void
rules_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static void
template_push(struct template *t, const char *text, size_t len, int is_column)
{
	t->segs = xrealloc(t->segs, (t->nsegs + 1) * sizeof(*t->segs));
	t->segs[t->nsegs].text = xstrndup(text, len);
	t->segs[t->nsegs].len = len;
	t->segs[t->nsegs].is_column = is_column;
	t->nsegs++;
}

/* Compiles one template, s[0..len), already trimmed. */
static int
template_compile(const char *s, size_t len, struct template *t, char *err,
    size_t errlen)
{
	struct buf lit = { 0 };
	int rc = -1;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == '{' && i + 1 < len && s[i + 1] == '{') {
			buf_addc(&lit, '{');
			i++;
		} else if (s[i] == '}' && i + 1 < len && s[i + 1] == '}') {
			buf_addc(&lit, '}');
			i++;
		} else if (s[i] == '{') {
			const char *end = memchr(s + i + 1, '}', len - i - 1);
			size_t clen;

			if (end == NULL) {
				rules_err(err, errlen, "unclosed '{' in \"%.*s\"",
				    (int)len, s);
				goto done;
			}
			clen = (size_t)(end - (s + i + 1));
			if (clen == 0 || memchr(s + i + 1, '{', clen) != NULL) {
				rules_err(err, errlen, "bad column name in \"%.*s\"",
				    (int)len, s);
				goto done;
			}
			if (lit.len > 0)
				template_push(t, lit.data, lit.len, 0);
			buf_reset(&lit);
			template_push(t, s + i + 1, clen, 1);
			i += clen + 1;
		} else if (s[i] == '}') {
			rules_err(err, errlen, "unmatched '}' in \"%.*s\" "
			    "(write '}}' for a literal brace)", (int)len, s);
			goto done;
		} else {
			buf_addc(&lit, s[i]);
		}
	}
	if (lit.len > 0)
		template_push(t, lit.data, lit.len, 0);
	rc = 0;
done:
	buf_free(&lit);
	return rc;
}

/* Whether a segment before segment i of template last names column. */
static int
rules_has_column(const struct rule_set *rs, const char *column,
    const struct template *last, size_t i)
{
	for (const struct template *t = rs->tpls; t <= last; t++)
		for (size_t j = 0; j < (t == last ? i : t->nsegs); j++)
			if (t->segs[j].is_column &&
			    strcmp(t->segs[j].text, column) == 0)
				return 1;
	return 0;
}

int
rules_compile(const char *spec, struct rule_set **out, char *err, size_t errlen)
{
	struct rule_set *rs = xcalloc(1, sizeof(*rs));
	struct buf cols = { 0 };
	const char *p = spec;

	*out = NULL;
	for (;;) {
		const char *comma = strchr(p, ',');
		const char *end = comma ? comma : p + strlen(p);
		const char *b = p, *e = end;
		struct template *t;

		while (b < e && (*b == ' ' || *b == '\t'))
			b++;
		while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (b == e) {
			rules_err(err, errlen, "empty key template");
			goto fail;
		}
		rs->tpls = xrealloc(rs->tpls, (rs->ntpls + 1) * sizeof(*rs->tpls));
		t = &rs->tpls[rs->ntpls++];
		memset(t, 0, sizeof(*t));
		if (template_compile(b, (size_t)(e - b), t, err, errlen) == -1)
			goto fail;
		for (size_t i = 0; i < t->nsegs; i++) {
			if (!t->segs[i].is_column ||
			    rules_has_column(rs, t->segs[i].text, t, i))
				continue;
			if (cols.len > 0)
				buf_adds(&cols, ", ");
			buf_adds(&cols, t->segs[i].text);
		}
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	rs->columns = buf_steal(&cols);
	*out = rs;
	return 0;
fail:
	buf_free(&cols);
	rules_free(rs);
	return -1;
}

void
rules_free(struct rule_set *rs)
{
	if (rs == NULL)
		return;
	for (size_t i = 0; i < rs->ntpls; i++) {
		for (size_t j = 0; j < rs->tpls[i].nsegs; j++)
			free(rs->tpls[i].segs[j].text);
		free(rs->tpls[i].segs);
	}
	free(rs->tpls);
	free(rs->columns);
	free(rs);
}

size_t
rules_count(const struct rule_set *rs)
{
	return rs->ntpls;
}

const char *
rules_columns(const struct rule_set *rs)
{
	return rs->columns;
}

#define KEYS_INDEX_FROM 16	/* a linear scan is cheaper below this */

static uint32_t
keys_hash(const char *s, size_t len)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h;
}

static bool
keys_equal(const struct keys *k, size_t i, const char *key, size_t len)
{
	return k->len[i] == len && memcmp(k->data.data + k->off[i], key, len) == 0;
}

/* Puts key number i in the index, which has room. */
static void
keys_index_put(struct keys *k, size_t i)
{
	size_t mask = k->nindex - 1;
	size_t h = keys_hash(k->data.data + k->off[i], k->len[i]) & mask;

	while (k->index[h] != 0)
		h = (h + 1) & mask;
	k->index[h] = (uint32_t)(i + 1);
}

/* Rebuilds the index at twice the keys' number, or more. */
static void
keys_reindex(struct keys *k)
{
	size_t want = 64;

	while (want < 2 * (k->n + 1))
		want *= 2;
	free(k->index);
	k->index = xcalloc(want, sizeof(*k->index));
	k->nindex = want;
	for (size_t i = 0; i < k->n; i++)
		keys_index_put(k, i);
}

void
keys_add(struct keys *k, const char *key, size_t len)
{
	if (k->n >= KEYS_INDEX_FROM) {
		size_t mask, h;

		if (k->nindex < 2 * (k->n + 1))
			keys_reindex(k);
		mask = k->nindex - 1;
		for (h = keys_hash(key, len) & mask; k->index[h] != 0;
		    h = (h + 1) & mask)
			if (keys_equal(k, k->index[h] - 1, key, len))
				return;
	} else {
		for (size_t i = 0; i < k->n; i++)
			if (keys_equal(k, i, key, len))
				return;
	}
	if (k->n == k->cap) {
		k->cap = k->cap ? k->cap * 2 : 8;
		k->off = xrealloc(k->off, k->cap * sizeof(*k->off));
		k->len = xrealloc(k->len, k->cap * sizeof(*k->len));
	}
	k->off[k->n] = k->data.len;
	k->len[k->n] = len;
	k->n++;
	buf_add(&k->data, key, len);
	if (k->nindex > 0)
		keys_index_put(k, k->n - 1);
}

const char *
keys_get(const struct keys *k, size_t i, size_t *len)
{
	*len = k->len[i];
	return k->data.data + k->off[i];
}

void
keys_reset(struct keys *k)
{
	k->n = 0;
	buf_reset(&k->data);
	if (k->index != NULL)
		memset(k->index, 0, k->nindex * sizeof(*k->index));
}

void
keys_free(struct keys *k)
{
	buf_free(&k->data);
	free(k->off);
	free(k->len);
	free(k->index);
	memset(k, 0, sizeof(*k));
}

/* Renders every template for one row image into out. */
static int
rules_render_image(const struct rule_set *rs, const struct row_image *img,
    struct keys *out, struct buf *key, char *err, size_t errlen)
{
	for (size_t i = 0; i < rs->ntpls; i++) {
		const struct template *t = &rs->tpls[i];
		int skip = 0;

		buf_reset(key);
		/* Every column is looked up, even after a NULL, so that a
		 * missing one is reported whatever the row holds. */
		for (size_t j = 0; j < t->nsegs; j++) {
			const struct segment *s = &t->segs[j];
			const struct row_col *c;

			if (!s->is_column) {
				buf_add(key, s->text, s->len);
				continue;
			}
			c = row_image_get(img, s->text);
			if (c == NULL) {
				rules_err(err, errlen, "column \"%s\" is not in the "
				    "event", s->text);
				return -1;
			}
			if (c->val == NULL)
				skip = 1;	/* NULL: the row has no such key */
			else
				buf_add(key, c->val, c->len);
		}
		if (!skip)
			keys_add(out, key->data ? key->data : "", key->len);
	}
	return 0;
}

int
rules_render(const struct rule_set *rs, const struct event *ev,
    struct keys *out, char *err, size_t errlen)
{
	struct buf key = { 0 };
	int rc = -1;

	if (ev->old.present &&
	    rules_render_image(rs, &ev->old, out, &key, err, errlen) == -1)
		goto done;
	if (ev->new.present &&
	    rules_render_image(rs, &ev->new, out, &key, err, errlen) == -1)
		goto done;
	for (size_t i = 0; i < ev->nrows; i++) {
		const struct event_row *r = &ev->rows[i];

		if ((r->old.present && rules_render_image(rs, &r->old, out, &key,
		    err, errlen) == -1) || (r->new.present &&
		    rules_render_image(rs, &r->new, out, &key, err, errlen) == -1))
			goto done;
	}
	rc = 0;
done:
	buf_free(&key);
	return rc;
}

char *
rules_pattern(const struct rule_set *rs, size_t i)
{
	const struct template *t = &rs->tpls[i];
	struct buf p = { 0 };

	for (size_t j = 0; j < t->nsegs; j++) {
		const struct segment *s = &t->segs[j];

		if (s->is_column) {
			buf_addc(&p, '*');
			continue;
		}
		for (size_t k = 0; k < s->len; k++) {
			if (strchr("*?[]\\", s->text[k]) != NULL && s->text[k] != '\0')
				buf_addc(&p, '\\');
			buf_addc(&p, s->text[k]);
		}
	}
	return buf_steal(&p);
}

bool
rules_prefixed(const struct rule_set *rs, size_t i)
{
	const struct template *t = &rs->tpls[i];

	return t->nsegs > 0 && !t->segs[0].is_column && t->segs[0].len > 0;
}
