/*
 * Key templates. A template compiles to a list of segments, each either
 * literal bytes or a column name; rendering concatenates them with the
 * row's values, byte for byte, so any value (spaces, colons, braces,
 * newlines, UTF-8) makes the same key the application would build.
 */
#include "core/rules.h"
#include "lib/xalloc.h"

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

#define MATCH_BUDGET 100000	/* steps before a match counts as ambiguous */

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
	/* Kept from one call to the next: a change costs no allocation. */
	static struct buf key;

	if (ev->old.present &&
	    rules_render_image(rs, &ev->old, out, &key, err, errlen) == -1)
		return -1;
	/* A shared image (event_share_images()) makes the same keys. */
	if (ev->new.present && !row_image_shared(&ev->old, &ev->new) &&
	    rules_render_image(rs, &ev->new, out, &key, err, errlen) == -1)
		return -1;
	for (size_t i = 0; i < ev->nrows; i++) {
		const struct event_row *r = &ev->rows[i];

		if ((r->old.present && rules_render_image(rs, &r->old, out, &key,
		    err, errlen) == -1) || (r->new.present &&
		    !row_image_shared(&r->old, &r->new) &&
		    rules_render_image(rs, &r->new, out, &key, err, errlen) == -1))
			return -1;
	}
	return 0;
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

/* A template seen as a matcher: ncols + 1 literal pieces (before each
 * column, and after the last), some of them empty. */
struct match {
	const struct segment **lits;	/* NULL: an empty piece */
	size_t ncols;
	const char *key;
	size_t len;
	size_t *ends;		/* where each column's value ends */
	size_t *best;		/* the first complete split found */
	int found;
	unsigned long steps;
};

static const char *
match_lit(const struct match *m, size_t i, size_t *len)
{
	*len = m->lits[i] ? m->lits[i]->len : 0;
	return m->lits[i] ? m->lits[i]->text : "";
}

/* Counts the splits of key[pos..) where column col starts at pos. */
static void
match_split(struct match *m, size_t col, size_t pos)
{
	size_t litlen;
	const char *lit = match_lit(m, col + 1, &litlen);
	bool last = col + 1 == m->ncols;

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
				memcpy(m->best, m->ends, m->ncols * sizeof(size_t));
		} else {
			match_split(m, col + 1, end + litlen);
		}
	}
}

int
rules_match(const struct rule_set *rs, size_t i, const char *key, size_t len,
    struct strs *values)
{
	const struct template *t = &rs->tpls[i];
	struct match m = { .key = key, .len = len };
	size_t litlen, pos;
	const char *lit;

	strs_reset(values);
	/* Literal segments are never adjacent: template_compile() merges
	 * them, so each piece is one segment or none. */
	m.lits = xcalloc(t->nsegs + 1, sizeof(*m.lits));
	for (size_t j = 0; j < t->nsegs; j++) {
		if (t->segs[j].is_column)
			m.ncols++;
		else
			m.lits[m.ncols] = &t->segs[j];
	}
	lit = match_lit(&m, 0, &litlen);
	if (len < litlen || memcmp(key, lit, litlen) != 0) {
		m.found = 0;
	} else if (m.ncols == 0) {
		m.found = len == litlen ? 1 : 0;
	} else {
		m.ends = xcalloc(m.ncols, sizeof(size_t));
		m.best = xcalloc(m.ncols, sizeof(size_t));
		match_split(&m, 0, litlen);
	}
	if (m.found == 1 && m.ncols > 0) {
		pos = litlen;
		for (size_t c = 0; c < m.ncols; c++) {
			strs_add(values, key + pos, m.best[c] - pos);
			match_lit(&m, c + 1, &litlen);
			pos = m.best[c] + litlen;
		}
	}
	free(m.lits);
	free(m.ends);
	free(m.best);
	return m.found;
}
