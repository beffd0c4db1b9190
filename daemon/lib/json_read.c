/*
 * The JSON reader: scalars, escapes (\uXXXX to UTF-8, surrogate pairs to
 * one character), and a bracket stack for the values it skips.
 */
#include "lib/json_read.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int
json_peek(const struct json_reader *rd)
{
	return rd->p < rd->end ? *rd->p : -1;
}

void
json_skip_blanks(struct json_reader *rd)
{
	while (rd->p < rd->end && *rd->p <= ' ')
		rd->p++;
}

/* Past blanks and c, if c comes next. */
static bool
eat(struct json_reader *rd, int c)
{
	json_skip_blanks(rd);
	if (json_peek(rd) != c)
		return false;
	rd->p++;
	return true;
}

static bool
hex4(const unsigned char *p, unsigned *cp)
{
	*cp = 0;
	for (int i = 0; i < 4; i++) {
		if (!isxdigit(p[i]))
			return false;
		*cp = *cp << 4 | (unsigned)(p[i] <= '9' ? p[i] - '0' :
		    (p[i] | 0x20) - 'a' + 10);
	}
	return true;
}

/*
 * The escape at p, written out at *out; returns its length, 0 if it is not
 * valid. \uXXXX gives UTF-8, a surrogate pair one character. cJSON read a
 * bad hex digit as a NUL, cutting the string short; here it is bad JSON.
 */
static size_t
unescape(const unsigned char *p, const unsigned char *end, char **out)
{
	static const char from[] = "bfnrt\"\\/", to[] = "\b\f\n\r\t\"\\/";
	static const unsigned char lead[] = { 0, 0xc0, 0xe0, 0xf0 };
	const char *e;
	unsigned cp, lo;
	size_t n = 6;
	int k;

	if (end - p < 2)
		return 0;
	if (p[1] != 'u') {
		if ((e = memchr(from, p[1], sizeof(from) - 1)) == NULL)
			return 0;
		*(*out)++ = to[e - from];
		return 2;
	}
	if (end - p < 6 || !hex4(p + 2, &cp) || (cp >= 0xdc00 && cp <= 0xdfff))
		return 0;
	if (cp >= 0xd800 && cp <= 0xdbff) {
		if (end - p < 12 || p[6] != '\\' || p[7] != 'u' ||
		    !hex4(p + 8, &lo) || lo < 0xdc00 || lo > 0xdfff)
			return 0;
		cp = 0x10000 + ((cp & 0x3ff) << 10 | (lo & 0x3ff));
		n = 12;
	}
	/* A lead byte, then k bytes of 6 bits each. */
	k = cp < 0x80 ? 0 : cp < 0x800 ? 1 : cp < 0x10000 ? 2 : 3;
	*(*out)++ = (char)(lead[k] | cp >> 6 * k);
	while (k-- > 0)
		*(*out)++ = (char)(0x80 | ((cp >> 6 * k) & 0x3f));
	return n;
}

/*
 * The string at rd->p, unescaped into the text. Control characters may be
 * raw, as cJSON allowed. A NUL, raw or escaped, ends the string as C sees
 * it (and as cJSON's users saw it): v->len stops there, and rd->nul is
 * set.
 */
static int
parse_string(struct json_reader *rd, struct json_val *v)
{
	static const bool stop[256] = { ['"'] = 1, ['\\'] = 1, ['\0'] = 1 };
	const unsigned char *p = rd->p + 1, *q;
	char *o = rd->text;
	bool nul = false;
	size_t n;

	for (;;) {
		for (q = p; q < rd->end && !stop[*q]; q++)
			;
		memcpy(o, p, (size_t)(q - p));
		o += q - p;
		if (q == rd->end)
			return -1;
		if (*q == '"')
			break;
		if (*q == '\0') {
			*o++ = '\0';
			n = 1;
		} else if ((n = unescape(q, rd->end, &o)) == 0) {
			return -1;
		}
		/* Only a NUL or \u0000 writes a NUL. */
		nul |= o[-1] == '\0';
		p = q + n;
	}
	*o = '\0';
	v->type = JSON_STRING;
	v->s = rd->text;
	v->len = nul ? strlen(v->s) : (size_t)(o - rd->text);
	rd->nul |= nul;
	rd->text = o + 1;
	rd->p = q + 1;
	return 0;
}

static bool
number_char(int c)
{
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == 'e' ||
	    c == 'E' || c == '.';
}

/*
 * A number as cJSON read one: the longest run of characters found in
 * numbers, of which strtod() takes what it can (what it leaves, the JSON
 * then rejects). Plain integers, the common case, are converted here, to
 * the same double.
 */
static int
parse_number(struct json_reader *rd, struct json_val *v)
{
	const unsigned char *p = rd->p, *digits = p + (*p == '-'), *q;
	int64_t i = 0;
	char *end;

	for (q = digits; q < rd->end && isdigit(*q) && q - digits < 18; q++)
		i = i * 10 + (*q - '0');
	if (q > digits && (q == rd->end || !number_char(*q))) {
		v->d = *p == '-' ? -(double)i : (double)i;
	} else {
		/* The text left has room for the run: see json_reader. */
		for (q = p; q < rd->end && number_char(*q); q++)
			;
		memcpy(rd->text, p, (size_t)(q - p));
		rd->text[q - p] = '\0';
		v->d = strtod(rd->text, &end);
		if (end == rd->text)
			return -1;
		q = p + (end - rd->text);
	}
	v->type = JSON_NUMBER;
	rd->p = q;
	return 0;
}

static int
parse_scalar(struct json_reader *rd, struct json_val *v)
{
	static const char *const words[] = {
		[JSON_NULL] = "null", [JSON_FALSE] = "false", [JSON_TRUE] = "true",
	};
	int c = json_peek(rd);
	size_t n;

	if (c == 'n' || c == 'f' || c == 't') {
		v->type = c == 'n' ? JSON_NULL : c == 'f' ? JSON_FALSE : JSON_TRUE;
		n = strlen(words[v->type]);
		if ((size_t)(rd->end - rd->p) < n ||
		    memcmp(rd->p, words[v->type], n) != 0)
			return -1;
		rd->p += n;
		return 0;
	}
	if (c == '"')
		return parse_string(rd, v);
	if (c == '-' || (c >= '0' && c <= '9'))
		return parse_number(rd, v);
	return -1;
}

bool
json_open(struct json_reader *rd)
{
	if (rd->depth >= JSON_MAX_DEPTH)
		return false;
	rd->depth++;
	rd->p++;
	return true;
}

/* Right after the opening bracket, where no value can have ended, no
 * comma is due. */
int
json_next_member(struct json_reader *rd, int close, struct json_val *key)
{
	bool first = rd->p[-1] == '[' || rd->p[-1] == '{';

	if (eat(rd, close)) {
		rd->depth--;
		return 0;
	}
	if (!first && !eat(rd, ','))
		return -1;
	json_skip_blanks(rd);
	if (close == '}' && (json_peek(rd) != '"' || parse_string(rd, key) == -1 ||
	    !eat(rd, ':')))
		return -1;
	json_skip_blanks(rd);
	return 1;
}

/* Checks and skips any value, with a stack of brackets, not recursion. */
int
json_skip_value(struct json_reader *rd)
{
	char close[JSON_MAX_DEPTH];
	size_t top = 0;
	struct json_val v;
	int c, r;

	for (;;) {
		c = json_peek(rd);
		if (c == '[' || c == '{') {
			if (!json_open(rd))
				return -1;
			close[top++] = c == '[' ? ']' : '}';
		} else if (parse_scalar(rd, &v) == -1) {
			return -1;
		} else if (top == 0) {
			return 0;
		}
		while ((r = json_next_member(rd, close[top - 1], &v)) == 0)
			if (--top == 0)
				return 0;
		if (r == -1)
			return -1;
	}
}

int
json_value(struct json_reader *rd, struct json_val *v)
{
	int c = json_peek(rd);

	if (c != '[' && c != '{')
		return parse_scalar(rd, v);
	v->type = c == '[' ? JSON_ARRAY : JSON_OBJECT;
	return json_skip_value(rd);
}

