/*
 * Payload decoding. Anything the triggers did not produce is rejected with
 * a reason; when the payload still names a table, the caller can fall back
 * to invalidating that whole table instead of losing the change.
 *
 * The parser is made for this one format, as it runs for every change: one
 * pass over the payload with json_read, its strings unescaped into a
 * single buffer the size of the payload, all its columns in one array.
 * Of several members of one name, the first counts, as with cJSON, used
 * here before. Values deeper than the format's (root, "rows", row, image)
 * are checked and skipped.
 */
#include "core/decode.h"
#include "lib/buf.h"
#include "lib/json_read.h"
#include "lib/xalloc.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DECODE_MAX_TABLE 512	/* two identifiers of 63 bytes, escaped */

static const char *const op_names[] = {
	[EVENT_INSERT] = "insert", [EVENT_UPDATE] = "update",
	[EVENT_DELETE] = "delete", [EVENT_TRUNCATE] = "truncate",
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
	struct json_val t, v, op, ts, big;
	enum { ROWS_ABSENT, ROWS_BAD, ROWS_LIST } rows;
	struct row one;		/* "o" and "n" of a payload without "rows" */
};

struct parser {
	struct json_reader rd;
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

/* The same columns, in order, with the same values. */
static bool
row_image_same(const struct row_image *a, const struct row_image *b)
{
	if (!a->present || !b->present || a->n != b->n)
		return false;
	if (a->cols == b->cols)
		return true;
	for (size_t i = 0; i < a->n; i++) {
		const struct row_col *x = &a->cols[i], *y = &b->cols[i];

		if ((x->val == NULL) != (y->val == NULL) ||
		    (x->val != NULL && (x->len != y->len ||
		    memcmp(x->val, y->val, x->len) != 0)) ||
		    strcmp(x->name, y->name) != 0)
			return false;
	}
	return true;
}

void
event_share_images(struct event *ev)
{
	if (row_image_same(&ev->old, &ev->new))
		ev->new.cols = ev->old.cols;
	for (size_t i = 0; i < ev->nrows; i++)
		if (row_image_same(&ev->rows[i].old, &ev->rows[i].new))
			ev->rows[i].new.cols = ev->rows[i].old.cols;
}

bool
row_image_shared(const struct row_image *a, const struct row_image *b)
{
	return a->present && b->present && a->cols == b->cols && a->n == b->n;
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

static void
add_column(struct parser *ps, const struct json_val *key, const struct json_val *v)
{
	struct row_col *c;
	int prec;

	if (ps->ncols == ps->colcap) {
		/* A first guess from the payload's size, then doubling. */
		ps->colcap = ps->colcap ? 2 * ps->colcap :
		    8 + (size_t)(ps->rd.end - ps->rd.p) / 16;
		ps->cols = xrealloc(ps->cols, ps->colcap * sizeof(*ps->cols));
	}
	c = &ps->cols[ps->ncols++];
	*c = (struct row_col){ .name = key->s };
	if (v->type == JSON_STRING) {
		c->val = v->s;
		c->len = v->len;
	} else if (v->type == JSON_TRUE || v->type == JSON_FALSE) {
		c->val = v->type == JSON_TRUE ? "true" : "false";
		c->len = strlen(c->val);
	} else if (v->type == JSON_NUMBER) {
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
	struct json_val key, v;
	int r;

	if (json_peek(&ps->rd) != '{') {
		img->state = IMG_NOT_OBJECT;
		return json_skip_value(&ps->rd);
	}
	if (!json_open(&ps->rd))
		return -1;
	img->state = IMG_OK;
	img->first = ps->ncols;
	while ((r = json_next_member(&ps->rd, '}', &key)) == 1) {
		if (json_value(&ps->rd, &v) == -1)
			return -1;
		if (v.type != JSON_ARRAY && v.type != JSON_OBJECT) {
			add_column(ps, &key, &v);
			img->n++;
		} else if (img->state == IMG_OK) {
			img->state = IMG_NOT_SCALAR;
			img->bad = key.s;
		}
	}
	return r;
}

static struct json_val *
root_field(struct fields *f, const struct json_val *key)
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
	struct json_val key, *v;
	int r;

	if (!json_open(&ps->rd))
		return -1;
	row->object = true;
	while ((r = json_next_member(&ps->rd, '}', &key)) == 1) {
		v = f != NULL ? root_field(f, &key) : NULL;
		if (v != NULL && v->type == JSON_NONE)
			r = json_value(&ps->rd, v);
		else if (f != NULL && f->rows == ROWS_ABSENT &&
		    KEY_IS(&key, "rows"))
			r = parse_rows(ps, f);
		else if (row->o.state == IMG_ABSENT && KEY_IS(&key, "o"))
			r = parse_image(ps, &row->o);
		else if (row->n.state == IMG_ABSENT && KEY_IS(&key, "n"))
			r = parse_image(ps, &row->n);
		else
			r = json_skip_value(&ps->rd);
		if (r == -1)
			return -1;
	}
	return r;
}

/* "rows": a list of objects with row images. */
static int
parse_rows(struct parser *ps, struct fields *f)
{
	struct json_val key;
	struct row *row;
	int r;

	f->rows = ROWS_BAD;
	if (json_peek(&ps->rd) != '[')
		return json_skip_value(&ps->rd);
	if (!json_open(&ps->rd))
		return -1;
	while ((r = json_next_member(&ps->rd, ']', &key)) == 1) {
		f->rows = ROWS_LIST;
		if (ps->nrows == ps->rowcap) {
			ps->rowcap = ps->rowcap ? 2 * ps->rowcap :
			    4 + (size_t)(ps->rd.end - ps->rd.p) / 128;
			ps->rows = xrealloc(ps->rows, ps->rowcap *
			    sizeof(*ps->rows));
		}
		row = &ps->rows[ps->nrows++];
		*row = (struct row){ .object = false };
		if ((json_peek(&ps->rd) == '{' ? parse_object(ps, row, NULL) :
		    json_skip_value(&ps->rd)) == -1)
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

	if (f->v.type != JSON_NUMBER || f->v.d != 1)
		return decode_err(DECODE_TABLE_ONLY, err, errlen,
		    "unknown payload version (\"v\" must be 1)");
	for (i = 0; i < nops; i++)
		if (f->op.type == JSON_STRING && strcmp(f->op.s, op_names[i]) == 0)
			break;
	if (i == nops)
		return decode_err(DECODE_TABLE_ONLY, err, errlen,
		    "unknown operation (\"op\")");
	ev->op = (enum event_op)i;
	if (f->ts.type != JSON_NONE) {
		if (f->ts.type != JSON_NUMBER || f->ts.d < 0 || f->ts.d > 9.2e18)
			return decode_err(DECODE_TABLE_ONLY, err, errlen,
			    "bad change time (\"ts\")");
		ev->ts = (int64_t)f->ts.d;
	}
	ev->big = f->big.type == JSON_TRUE;
	if (ev->big || ev->op == EVENT_TRUNCATE)
		return DECODE_OK;

	/* PostgreSQL text never holds one: the triggers did not send this,
	 * and a C string would cut the value short. */
	if (ps->rd.nul)
		return decode_err(DECODE_TABLE_ONLY, err, errlen,
		    "a value contains a NUL character");
	if (f->rows == ROWS_ABSENT) {
		if (check_row(&f->one, ev->op, err, errlen) != DECODE_OK)
			return DECODE_TABLE_ONLY;
		output_image(ps, &f->one.o, &ev->old);
		output_image(ps, &f->one.n, &ev->new);
		event_share_images(ev);
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
	event_share_images(ev);
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
	ps.rd.text = mem->text;
	ps.rd.p = (const unsigned char *)payload;
	ps.rd.end = ps.rd.p + len;
	/* A UTF-8 byte order mark, which cJSON skipped when more followed. */
	if (len > 4 && memcmp(payload, "\xef\xbb\xbf", 3) == 0)
		ps.rd.p += 3;
	json_skip_blanks(&ps.rd);
	object = json_peek(&ps.rd) == '{';
	if ((object ? parse_object(&ps, &f.one, &f) : json_skip_value(&ps.rd)) == -1) {
		r = decode_err(DECODE_JUNK, err, errlen, "not JSON");
		goto done;
	}
	while (ps.rd.p < ps.rd.end && memchr(" \t\r\n", *ps.rd.p, 4) != NULL)
		ps.rd.p++;
	if (ps.rd.p < ps.rd.end) {
		r = decode_err(DECODE_JUNK, err, errlen,
		    "text after the JSON object");
	} else if (!object || f.t.type != JSON_STRING || f.t.len == 0 ||
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
