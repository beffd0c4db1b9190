/*
 * Payload decoding. Anything the triggers did not produce is rejected with
 * a reason; when the payload still names a table, the caller can fall back
 * to invalidating that whole table instead of losing the change.
 *
 * The parser is made for this one format, as it runs for every change: one
 * pass over the payload, its strings unescaped into a single buffer the
 * size of the payload, all its columns in one array. It reads JSON as
 * cJSON, used here before, did (the same blanks, numbers, escapes and
 * nesting limit; of several members of one name, the first counts), so
 * that what a payload means did not change with the parser. Values deeper
 * than the format's (root, "rows", row, image) are checked and skipped
 * without recursion.
 */
#include "decode.h"
#include "buf.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DECODE_MAX_TABLE 512	/* two identifiers of 63 bytes, escaped */
#define DECODE_MAX_DEPTH 1000	/* open arrays and objects, as in cJSON */

static const char *const op_names[] = {
	[EVENT_INSERT] = "insert", [EVENT_UPDATE] = "update",
	[EVENT_DELETE] = "delete", [EVENT_TRUNCATE] = "truncate",
};

/* A value as read; of an array or an object, only its type. */
struct jval {
	enum { J_NONE, J_NULL, J_FALSE, J_TRUE, J_NUMBER, J_STRING, J_ARRAY,
	    J_OBJECT } type;	/* J_NONE: no such member */
	const char *s;		/* J_STRING: NUL-terminated, in the text */
	size_t len;		/* up to its first NUL, as C sees it */
	double d;		/* J_NUMBER */
};

/* A row image as read: cols[first..first + n) of the parser, whose array
 * may still move. Its errors are reported once the payload has been read,
 * in the order the checks have always been made in. */
struct img {
	enum { IMG_ABSENT, IMG_OK, IMG_NOT_OBJECT, IMG_NOT_SCALAR } state;
	size_t first, n;
	const char *bad;	/* IMG_NOT_SCALAR: the column's name */
};

struct row {
	bool object;
	struct img o, n;
};

/* The members of the root object that matter. */
struct fields {
	struct jval t, v, op, ts, big;
	enum { ROWS_ABSENT, ROWS_BAD, ROWS_LIST } rows;
	struct row one;		/* "o" and "n" of a payload without "rows" */
};

struct parser {
	const unsigned char *p, *end;
	char *text;		/* the next free byte of the text */
	bool nul;		/* a string held a NUL */
	size_t depth;		/* arrays and objects open */
	struct row_col *cols;
	size_t ncols, colcap;
	struct row *rows;	/* the elements of "rows" */
	size_t nrows, rowcap;
};

/* What ev->json points to. */
struct decode_mem {
	struct row_col *cols;
	char text[];
};

#define KEY_IS(k, lit) ((k)->len == sizeof(lit) - 1 && \
	memcmp((k)->s, (lit), sizeof(lit) - 1) == 0)

const char *
event_op_name(enum event_op op)
{
	return op_names[op];
}

const struct row_col *
row_image_get(const struct row_image *img, const char *name)
{
	for (size_t i = 0; i < img->n; i++)
		if (strcmp(img->cols[i].name, name) == 0)
			return &img->cols[i];
	return NULL;
}

static enum decode_result decode_err(enum decode_result, char *, size_t,
    const char *, ...) __attribute__((format(printf, 4, 5)));

/* Writes the reason to err, and returns r. */
static enum decode_result
decode_err(enum decode_result r, char *err, size_t errlen, const char *fmt,
    ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return r;
}

static int
peek(const struct parser *ps)
{
	return ps->p < ps->end ? *ps->p : -1;
}

/* To cJSON, every byte up to the space is a blank, NUL included. */
static void
skip_blanks(struct parser *ps)
{
	while (ps->p < ps->end && *ps->p <= ' ')
		ps->p++;
}

/* Past blanks and c, if c comes next. */
static bool
eat(struct parser *ps, int c)
{
	skip_blanks(ps);
	if (peek(ps) != c)
		return false;
	ps->p++;
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
 * The string at ps->p, unescaped into the text. Control characters may be
 * raw, as cJSON allowed. A NUL, raw or escaped, ends the string as C sees
 * it (and as cJSON's users saw it): v->len stops there, and the payload is
 * marked as holding one.
 */
static int
parse_string(struct parser *ps, struct jval *v)
{
	static const bool stop[256] = { ['"'] = 1, ['\\'] = 1, ['\0'] = 1 };
	const unsigned char *p = ps->p + 1, *q;
	char *o = ps->text;
	bool nul = false;
	size_t n;

	for (;;) {
		for (q = p; q < ps->end && !stop[*q]; q++)
			;
		memcpy(o, p, (size_t)(q - p));
		o += q - p;
		if (q == ps->end)
			return -1;
		if (*q == '"')
			break;
		if (*q == '\0') {
			*o++ = '\0';
			n = 1;
		} else if ((n = unescape(q, ps->end, &o)) == 0) {
			return -1;
		}
		/* Only a NUL or \u0000 writes a NUL. */
		nul |= o[-1] == '\0';
		p = q + n;
	}
	*o = '\0';
	v->type = J_STRING;
	v->s = ps->text;
	v->len = nul ? strlen(v->s) : (size_t)(o - ps->text);
	ps->nul |= nul;
	ps->text = o + 1;
	ps->p = q + 1;
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
parse_number(struct parser *ps, struct jval *v)
{
	const unsigned char *p = ps->p, *digits = p + (*p == '-'), *q;
	int64_t i = 0;
	char *end;

	for (q = digits; q < ps->end && isdigit(*q) && q - digits < 18; q++)
		i = i * 10 + (*q - '0');
	if (q > digits && (q == ps->end || !number_char(*q))) {
		v->d = *p == '-' ? -(double)i : (double)i;
	} else {
		/* The text left has room for the run: see decode_event(). */
		for (q = p; q < ps->end && number_char(*q); q++)
			;
		memcpy(ps->text, p, (size_t)(q - p));
		ps->text[q - p] = '\0';
		v->d = strtod(ps->text, &end);
		if (end == ps->text)
			return -1;
		q = p + (end - ps->text);
	}
	v->type = J_NUMBER;
	ps->p = q;
	return 0;
}

static int
parse_scalar(struct parser *ps, struct jval *v)
{
	static const char *const words[] = {
		[J_NULL] = "null", [J_FALSE] = "false", [J_TRUE] = "true",
	};
	int c = peek(ps);
	size_t n;

	if (c == 'n' || c == 'f' || c == 't') {
		v->type = c == 'n' ? J_NULL : c == 'f' ? J_FALSE : J_TRUE;
		n = strlen(words[v->type]);
		if ((size_t)(ps->end - ps->p) < n ||
		    memcmp(ps->p, words[v->type], n) != 0)
			return -1;
		ps->p += n;
		return 0;
	}
	if (c == '"')
		return parse_string(ps, v);
	if (c == '-' || (c >= '0' && c <= '9'))
		return parse_number(ps, v);
	return -1;
}

/* Past the [ or { at ps->p, unless that nests too deep. */
static bool
open_nested(struct parser *ps)
{
	if (ps->depth >= DECODE_MAX_DEPTH)
		return false;
	ps->depth++;
	ps->p++;
	return true;
}

/*
 * Steps to the next member of the array or object being read, which ends
 * with close: returns 1 at the member's value (its name in *key, in an
 * object), 0 past the end, -1 on bad syntax. Right after the opening
 * bracket, where no value can have ended, no comma is due.
 */
static int
next_member(struct parser *ps, int close, struct jval *key)
{
	bool first = ps->p[-1] == '[' || ps->p[-1] == '{';

	if (eat(ps, close)) {
		ps->depth--;
		return 0;
	}
	if (!first && !eat(ps, ','))
		return -1;
	skip_blanks(ps);
	if (close == '}' && (peek(ps) != '"' || parse_string(ps, key) == -1 ||
	    !eat(ps, ':')))
		return -1;
	skip_blanks(ps);
	return 1;
}

/* Checks and skips any value, with a stack of brackets, not recursion. */
static int
skip_value(struct parser *ps)
{
	char close[DECODE_MAX_DEPTH];
	size_t top = 0;
	struct jval v;
	int c, r;

	for (;;) {
		c = peek(ps);
		if (c == '[' || c == '{') {
			if (!open_nested(ps))
				return -1;
			close[top++] = c == '[' ? ']' : '}';
		} else if (parse_scalar(ps, &v) == -1) {
			return -1;
		} else if (top == 0) {
			return 0;
		}
		while ((r = next_member(ps, close[top - 1], &v)) == 0)
			if (--top == 0)
				return 0;
		if (r == -1)
			return -1;
	}
}

static int
parse_value(struct parser *ps, struct jval *v)
{
	int c = peek(ps);

	if (c != '[' && c != '{')
		return parse_scalar(ps, v);
	v->type = c == '[' ? J_ARRAY : J_OBJECT;
	return skip_value(ps);
}

static void
add_column(struct parser *ps, const struct jval *key, const struct jval *v)
{
	struct row_col *c;
	int prec;

	if (ps->ncols == ps->colcap) {
		/* A first guess from the payload's size, then doubling. */
		ps->colcap = ps->colcap ? 2 * ps->colcap :
		    8 + (size_t)(ps->end - ps->p) / 16;
		ps->cols = xrealloc(ps->cols, ps->colcap * sizeof(*ps->cols));
	}
	c = &ps->cols[ps->ncols++];
	*c = (struct row_col){ .name = key->s };
	if (v->type == J_STRING) {
		c->val = v->s;
		c->len = v->len;
	} else if (v->type == J_TRUE || v->type == J_FALSE) {
		c->val = v->type == J_TRUE ? "true" : "false";
		c->len = strlen(c->val);
	} else if (v->type == J_NUMBER) {
		/* Integers in full, others in the shortest text that reads
		 * back the same (0.1, not 0.10000000000000001). c->val is
		 * set once the array stops moving. */
		if (isfinite(v->d) && v->d == floor(v->d) &&
		    fabs(v->d) < 9007199254740992.0)
			snprintf(c->num, sizeof(c->num), "%.0f", v->d);
		else
			for (prec = 15; prec <= 17; prec++) {
				snprintf(c->num, sizeof(c->num), "%.*g", prec,
				    v->d);
				if (strtod(c->num, NULL) == v->d)
					break;
			}
		c->len = strlen(c->num);
	}
}

/* A row image: an object of columns with scalar values. */
static int
parse_image(struct parser *ps, struct img *img)
{
	struct jval key, v;
	int r;

	if (peek(ps) != '{') {
		img->state = IMG_NOT_OBJECT;
		return skip_value(ps);
	}
	if (!open_nested(ps))
		return -1;
	img->state = IMG_OK;
	img->first = ps->ncols;
	while ((r = next_member(ps, '}', &key)) == 1) {
		if (parse_value(ps, &v) == -1)
			return -1;
		if (v.type != J_ARRAY && v.type != J_OBJECT) {
			add_column(ps, &key, &v);
			img->n++;
		} else if (img->state == IMG_OK) {
			img->state = IMG_NOT_SCALAR;
			img->bad = key.s;
		}
	}
	return r;
}

static struct jval *
root_field(struct fields *f, const struct jval *key)
{
	return KEY_IS(key, "t") ? &f->t : KEY_IS(key, "v") ? &f->v :
	    KEY_IS(key, "op") ? &f->op : KEY_IS(key, "ts") ? &f->ts :
	    KEY_IS(key, "big") ? &f->big : NULL;
}

static int parse_rows(struct parser *, struct fields *);

/*
 * The root object (f set) or an element of its "rows" (which cannot have
 * "rows" of its own). Of several members of one name, the first counts,
 * as with cJSON_GetObjectItemCaseSensitive().
 */
static int
parse_object(struct parser *ps, struct row *row, struct fields *f)
{
	struct jval key, *v;
	int r;

	if (!open_nested(ps))
		return -1;
	row->object = true;
	while ((r = next_member(ps, '}', &key)) == 1) {
		v = f != NULL ? root_field(f, &key) : NULL;
		if (v != NULL && v->type == J_NONE)
			r = parse_value(ps, v);
		else if (f != NULL && f->rows == ROWS_ABSENT &&
		    KEY_IS(&key, "rows"))
			r = parse_rows(ps, f);
		else if (row->o.state == IMG_ABSENT && KEY_IS(&key, "o"))
			r = parse_image(ps, &row->o);
		else if (row->n.state == IMG_ABSENT && KEY_IS(&key, "n"))
			r = parse_image(ps, &row->n);
		else
			r = skip_value(ps);
		if (r == -1)
			return -1;
	}
	return r;
}

/* "rows": a list of objects with row images. */
static int
parse_rows(struct parser *ps, struct fields *f)
{
	struct jval key;
	struct row *row;
	int r;

	f->rows = ROWS_BAD;
	if (peek(ps) != '[')
		return skip_value(ps);
	if (!open_nested(ps))
		return -1;
	while ((r = next_member(ps, ']', &key)) == 1) {
		f->rows = ROWS_LIST;
		if (ps->nrows == ps->rowcap) {
			ps->rowcap = ps->rowcap ? 2 * ps->rowcap :
			    4 + (size_t)(ps->end - ps->p) / 128;
			ps->rows = xrealloc(ps->rows, ps->rowcap *
			    sizeof(*ps->rows));
		}
		row = &ps->rows[ps->nrows++];
		*row = (struct row){ .object = false };
		if ((peek(ps) == '{' ? parse_object(ps, row, NULL) :
		    skip_value(ps)) == -1)
			return -1;
	}
	return r;
}

static enum decode_result
check_image(const struct img *img, char *err, size_t errlen)
{
	if (img->state == IMG_NOT_OBJECT)
		return decode_err(DECODE_TABLE_ONLY, err, errlen,
		    "row image is not a JSON object");
	if (img->state == IMG_NOT_SCALAR)
		return decode_err(DECODE_TABLE_ONLY, err, errlen,
		    "column \"%s\" is not a scalar", img->bad);
	return DECODE_OK;
}

/* The images of one row, as op requires them. */
static enum decode_result
check_row(const struct row *row, enum event_op op, char *err, size_t errlen)
{
	if (!row->object)
		return decode_err(DECODE_TABLE_ONLY, err, errlen,
		    "a row is not an object");
	if (op != EVENT_INSERT && row->o.state == IMG_ABSENT)
		return decode_err(DECODE_TABLE_ONLY, err, errlen,
		    "%s without old row (\"o\")", op_names[op]);
	if (op != EVENT_DELETE && row->n.state == IMG_ABSENT)
		return decode_err(DECODE_TABLE_ONLY, err, errlen,
		    "%s without new row (\"n\")", op_names[op]);
	if (check_image(&row->o, err, errlen) != DECODE_OK)
		return DECODE_TABLE_ONLY;
	return check_image(&row->n, err, errlen);
}

static void
output_image(const struct parser *ps, const struct img *img,
    struct row_image *out)
{
	if (img->state != IMG_OK)
		return;
	out->present = true;
	out->n = img->n;
	out->cols = img->n > 0 ? ps->cols + img->first : NULL;
	for (size_t i = 0; i < out->n; i++)
		if (out->cols[i].num[0] != '\0')
			out->cols[i].val = out->cols[i].num;
}

/* The checks of a payload that names a table, in their historic order. */
static enum decode_result
decode_fields(const struct parser *ps, const struct fields *f,
    struct event *ev, char *err, size_t errlen)
{
	size_t i, nops = sizeof(op_names) / sizeof(op_names[0]);

	if (f->v.type != J_NUMBER || f->v.d != 1)
		return decode_err(DECODE_TABLE_ONLY, err, errlen,
		    "unknown payload version (\"v\" must be 1)");
	for (i = 0; i < nops; i++)
		if (f->op.type == J_STRING && strcmp(f->op.s, op_names[i]) == 0)
			break;
	if (i == nops)
		return decode_err(DECODE_TABLE_ONLY, err, errlen,
		    "unknown operation (\"op\")");
	ev->op = (enum event_op)i;
	if (f->ts.type != J_NONE) {
		if (f->ts.type != J_NUMBER || f->ts.d < 0 || f->ts.d > 9.2e18)
			return decode_err(DECODE_TABLE_ONLY, err, errlen,
			    "bad change time (\"ts\")");
		ev->ts = (int64_t)f->ts.d;
	}
	ev->big = f->big.type == J_TRUE;
	if (ev->big || ev->op == EVENT_TRUNCATE)
		return DECODE_OK;

	/* PostgreSQL text never holds one: the triggers did not send this,
	 * and a C string would cut the value short. */
	if (ps->nul)
		return decode_err(DECODE_TABLE_ONLY, err, errlen,
		    "a value contains a NUL character");
	if (f->rows == ROWS_ABSENT) {
		if (check_row(&f->one, ev->op, err, errlen) != DECODE_OK)
			return DECODE_TABLE_ONLY;
		output_image(ps, &f->one.o, &ev->old);
		output_image(ps, &f->one.n, &ev->new);
		return DECODE_OK;
	}
	if (f->rows != ROWS_LIST)
		return decode_err(DECODE_TABLE_ONLY, err, errlen,
		    "\"rows\" is not a list of rows");
	for (i = 0; i < ps->nrows; i++)
		if (check_row(&ps->rows[i], ev->op, err, errlen) != DECODE_OK)
			return DECODE_TABLE_ONLY;
	ev->rows = xcalloc(ps->nrows, sizeof(*ev->rows));
	for (i = 0; i < ps->nrows; i++) {
		output_image(ps, &ps->rows[i].o, &ev->rows[i].old);
		output_image(ps, &ps->rows[i].n, &ev->rows[i].new);
	}
	ev->nrows = ps->nrows;
	return DECODE_OK;
}

enum decode_result
decode_event(const char *payload, size_t len, struct event *ev, char *err,
    size_t errlen)
{
	struct parser ps = { 0 };
	struct fields f = { 0 };
	struct decode_mem *mem;
	enum decode_result r;
	bool object;

	memset(ev, 0, sizeof(*ev));
	err[0] = '\0';
	if (len == 0 || len > SIZE_MAX / 2)
		return decode_err(DECODE_JUNK, err, errlen, "not JSON");
	/* Unescaped, a string takes at most as many bytes as it did between
	 * its quotes, plus its NUL: the text never uses more of its buffer
	 * than has been read of the payload. */
	mem = xmalloc(sizeof(*mem) + len + 1);
	ps.text = mem->text;
	ps.p = (const unsigned char *)payload;
	ps.end = ps.p + len;
	/* A UTF-8 byte order mark, which cJSON skipped when more followed. */
	if (len > 4 && memcmp(payload, "\xef\xbb\xbf", 3) == 0)
		ps.p += 3;
	skip_blanks(&ps);
	object = peek(&ps) == '{';
	if ((object ? parse_object(&ps, &f.one, &f) : skip_value(&ps)) == -1) {
		r = decode_err(DECODE_JUNK, err, errlen, "not JSON");
		goto done;
	}
	while (ps.p < ps.end && memchr(" \t\r\n", *ps.p, 4) != NULL)
		ps.p++;
	if (ps.p < ps.end) {
		r = decode_err(DECODE_JUNK, err, errlen,
		    "text after the JSON object");
	} else if (!object || f.t.type != J_STRING || f.t.len == 0 ||
	    f.t.len > DECODE_MAX_TABLE) {
		r = decode_err(DECODE_JUNK, err, errlen,
		    "no table name (\"t\")");
	} else {
		mem->cols = ps.cols;
		ev->json = mem;
		ev->table = f.t.s;
		r = decode_fields(&ps, &f, ev, err, errlen);
	}
done:
	if (r == DECODE_JUNK) {
		free(ps.cols);
		free(mem);
	}
	free(ps.rows);
	return r;
}

void
decode_event_free(struct event *ev)
{
	struct decode_mem *mem = ev->json;

	if (mem != NULL)
		free(mem->cols);
	free(mem);
	free(ev->rows);
	memset(ev, 0, sizeof(*ev));
}
