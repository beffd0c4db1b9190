/*
 * Fuzzing of key templates: rules_compile(), rules_render(),
 * rules_pattern(), rules_prefixed() and rules_match().
 *
 * The input is a template spec, a newline, then a value (any bytes). When
 * the spec compiles, every column it names is given that value and the
 * templates are rendered. Properties checked:
 *   - rules_columns() lists every column the templates use: a row holding
 *     those columns always renders;
 *   - a row without them never does, unless no template has a column;
 *   - every rendered key matches the SCAN pattern of some template, and
 *     those patterns contain no glob syntax but '*' and escapes;
 *   - rules_match() finds every rendered key in some template, and with
 *     a single template, a key it splits in one way only gives back the
 *     value in every column.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../daemon/lib/buf.h"
#include "../../daemon/core/decode.h"
#include "../../daemon/core/rules.h"
#include "../../daemon/lib/xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fail(const char *what, const char *spec)
{
	fprintf(stderr, "fuzz_rules: %s (spec \"%s\")\n", what, spec);
	abort();
}

/* A pattern as rules_pattern() writes it: '*', or one literal byte. */
struct token {
	int star;
	char c;
};

/* Reads pattern the way Redis's glob matcher does; anything but '*',
 * escapes and plain bytes is a failure, since templates have no other
 * wildcards. Returns the number of tokens. */
static size_t
tokenize(const char *pat, struct token *tok, const char *spec)
{
	size_t n = 0;

	for (const char *p = pat; *p != '\0'; p++) {
		switch (*p) {
		case '*':
			tok[n].star = 1;
			tok[n].c = 0;
			break;
		case '?':
		case '[':
			fail("pattern has an unescaped '?' or '['", spec);
			break;
		case '\\':
			if (p[1] == '\0')
				fail("pattern ends in a lone backslash", spec);
			p++;
			/* fall through */
		default:
			tok[n].star = 0;
			tok[n].c = *p;
		}
		n++;
	}
	return n;
}

/* Glob matching over tokens that each match one byte, or any run ('*'). */
static int
glob_match(const struct token *tok, size_t ntok, const char *key, size_t klen)
{
	size_t p = 0, k = 0, star = SIZE_MAX, mark = 0;

	while (k < klen) {
		if (p < ntok && tok[p].star) {
			star = p++;
			mark = k;
		} else if (p < ntok && tok[p].c == key[k]) {
			p++;
			k++;
		} else if (star != SIZE_MAX) {
			p = star + 1;
			k = ++mark;
		} else {
			return 0;
		}
	}
	while (p < ntok && tok[p].star)
		p++;
	return p == ntok;
}

/* An image with one column per name in the rule set's column list, each
 * holding val (NULL: SQL NULL). */
static void
make_image(struct row_image *img, char *names, const char *val, size_t len)
{
	size_t n = 1;

	memset(img, 0, sizeof(*img));
	img->present = true;
	if (names[0] == '\0') {
		img->cols = xcalloc(1, sizeof(*img->cols));
		return;
	}
	for (const char *p = names; *p != '\0'; p++)
		n += *p == ',';
	img->cols = xcalloc(n, sizeof(*img->cols));
	/* Column names hold no comma; the list is joined with ", ". */
	for (char *p = names, *comma;; p = comma + 2) {
		comma = strchr(p, ',');
		if (comma != NULL)
			*comma = '\0';
		img->cols[img->n].name = p;
		img->cols[img->n].val = val;
		img->cols[img->n].len = val ? len : 0;
		img->n++;
		if (comma == NULL)
			break;
	}
}

/* The way back: each key of k (rendered with val in every column) is
 * matched by some template of rs. */
static void
check_match(const struct rule_set *rs, const struct keys *k, const char *val,
    size_t vlen, const char *spec)
{
	size_t npat = rules_count(rs);
	struct strs values = { 0 };

	for (size_t i = 0; i < k->n; i++) {
		size_t len, j;
		const char *key = keys_get(k, i, &len);
		int n = 0;

		for (j = 0; j < npat; j++)
			if ((n = rules_match(rs, j, key, len, &values)) > 0)
				break;
		if (j == npat)
			fail("rules_match found a rendered key in no template",
			    spec);
		if (npat > 1 || n != 1)
			continue;
		for (size_t v = 0; v < values.n; v++) {
			size_t got;
			const char *p = strs_get(&values, v, &got);

			if (got != vlen || memcmp(p, val, vlen) != 0)
				fail("rules_match split a key into other values",
				    spec);
		}
	}
	strs_free(&values);
}

static void
check_keys(const struct keys *k, size_t most, struct token **tok,
    const size_t *ntok, size_t npat, const char *spec)
{
	if (k->n > most)
		fail("more keys than templates", spec);
	for (size_t i = 0; i < k->n; i++) {
		size_t len, j;
		const char *key = keys_get(k, i, &len);

		for (j = 0; j < npat; j++)
			if (glob_match(tok[j], ntok[j], key, len))
				break;
		if (j == npat)
			fail("a key matches no template's pattern", spec);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t slen = nl ? (size_t)(nl - data) : size;
	const char *val;
	size_t vlen;
	char *spec, *names, *names2, *vcopy;
	struct rule_set *rs;
	struct token **tok;
	size_t *ntok, npat, nkeys;
	struct event ev;
	struct keys k = { 0 };
	char err[256];
	int rc;

	spec = xstrndup((const char *)data, slen);
	vlen = nl ? size - slen - 1 : 0;
	/* An exact-size copy of the value: keys must be built with its
	 * length, never by looking for a NUL. */
	vcopy = xmalloc(vlen);
	if (vlen > 0)
		memcpy(vcopy, nl + 1, vlen);
	val = vcopy;

	memset(err, 'x', sizeof(err));
	if (rules_compile(spec, &rs, err, sizeof(err)) != 0) {
		if (rs != NULL || memchr(err, '\0', sizeof(err)) == NULL ||
		    err[0] == '\0')
			fail("failed compile left a rule set or no message", spec);
		free(vcopy);
		free(spec);
		return 0;
	}
	npat = rules_count(rs);
	if (npat == 0)
		fail("a compiled spec has no templates", spec);
	tok = xcalloc(npat, sizeof(*tok));
	ntok = xcalloc(npat, sizeof(*ntok));
	for (size_t i = 0; i < npat; i++) {
		char *pat = rules_pattern(rs, i);

		if (pat == NULL)
			fail("rules_pattern returned NULL", spec);
		tok[i] = xcalloc(strlen(pat) + 1, sizeof(**tok));
		ntok[i] = tokenize(pat, tok[i], spec);
		free(pat);
		/* A template begins with literal text exactly when its
		 * pattern begins with a literal byte. */
		if (rules_prefixed(rs, i) != (ntok[i] > 0 && !tok[i][0].star))
			fail("rules_prefixed disagrees with the pattern", spec);
	}
	names = xstrdup(rules_columns(rs));

	/* Every column holds the value: every template renders. */
	memset(&ev, 0, sizeof(ev));
	ev.op = EVENT_UPDATE;
	ev.table = "public.fuzz";
	make_image(&ev.old, names, val, vlen);
	if (rules_render(rs, &ev, &k, err, sizeof(err)) != 0)
		fail("a row with every listed column did not render", spec);
	if (k.n == 0)
		fail("a row without NULLs gave no key", spec);
	check_keys(&k, npat, tok, ntok, npat, spec);
	check_match(rs, &k, val, vlen, spec);
	nkeys = k.n;

	/* The same row again, and one with every column NULL: no new key
	 * beyond the literal-only templates. */
	names2 = xstrdup(rules_columns(rs));
	make_image(&ev.new, names2, NULL, 0);
	keys_reset(&k);
	if (rules_render(rs, &ev, &k, err, sizeof(err)) != 0)
		fail("a row with NULL columns did not render", spec);
	if (k.n != nkeys)
		fail("NULL columns made keys", spec);
	check_keys(&k, npat, tok, ntok, npat, spec);

	/* A row with no columns at all renders only if nothing needs one. */
	free(ev.old.cols);
	free(ev.new.cols);
	memset(&ev.new, 0, sizeof(ev.new));
	ev.old.present = true;
	ev.old.n = 0;
	ev.old.cols = NULL;
	ev.op = EVENT_DELETE;
	keys_reset(&k);
	memset(err, 'x', sizeof(err));
	rc = rules_render(rs, &ev, &k, err, sizeof(err));
	if (rc != (rules_columns(rs)[0] == '\0' ? 0 : -1))
		fail("a row without columns rendered wrongly", spec);
	if (rc == -1 && (memchr(err, '\0', sizeof(err)) == NULL ||
	    strncmp(err, "column \"", 8) != 0))
		fail("a missing column gave no message", spec);
	check_keys(&k, npat, tok, ntok, npat, spec);

	keys_free(&k);
	for (size_t i = 0; i < npat; i++)
		free(tok[i]);
	free(tok);
	free(ntok);
	free(names);
	free(names2);
	rules_free(rs);
	free(vcopy);
	free(spec);
	return 0;
}
