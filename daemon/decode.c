/*
 * Payload decoding. Anything the triggers did not produce is rejected with
 * a reason; when the payload still names a table, the caller can fall back
 * to invalidating that whole table instead of losing the change.
 */
#include "decode.h"
#include "buf.h"

#include <cjson/cJSON.h>
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

static void
decode_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/*
 * cJSON turns "\u0000" into a NUL byte inside a C string, which would
 * silently truncate a value. PostgreSQL text never holds NUL, so such a
 * payload was not made by the triggers; detect it before parsing.
 */
static bool
decode_has_nul_escape(const char *p, size_t len)
{
	const char *end = p + len, *q = p;

	while ((q = memchr(q, '\\', (size_t)(end - q))) != NULL) {
		if (q + 5 < end && q[1] == 'u' && memcmp(q + 2, "0000", 4) == 0)
			return true;
		q += 2;	/* past the escaped character */
		if (q >= end)
			break;
	}
	return false;
}

/* The shortest text that reads back as d: 0.1 rather than
 * 0.10000000000000001. */
static void
decode_number(char *out, size_t size, double d)
{
	for (int prec = 15; prec < 17; prec++) {
		snprintf(out, size, "%.*g", prec, d);
		if (strtod(out, NULL) == d)
			return;
	}
	snprintf(out, size, "%.17g", d);
}

static int
decode_image(const cJSON *obj, struct row_image *img, char *err, size_t errlen)
{
	const cJSON *item;
	size_t n = 0;

	if (!cJSON_IsObject(obj)) {
		decode_err(err, errlen, "row image is not a JSON object");
		return -1;
	}
	cJSON_ArrayForEach(item, obj)
		n++;
	img->cols = xcalloc(n, sizeof(*img->cols));
	img->present = true;
	cJSON_ArrayForEach(item, obj) {
		struct row_col *c = &img->cols[img->n++];

		c->name = item->string;
		if (cJSON_IsString(item)) {
			c->val = item->valuestring;
			c->len = strlen(item->valuestring);
		} else if (cJSON_IsNumber(item)) {
			double d = item->valuedouble;

			if (isfinite(d) && d == floor(d) && fabs(d) < 9007199254740992.0)
				snprintf(c->num, sizeof(c->num), "%.0f", d);
			else
				decode_number(c->num, sizeof(c->num), d);
			c->val = c->num;
			c->len = strlen(c->num);
		} else if (cJSON_IsBool(item)) {
			c->val = cJSON_IsTrue(item) ? "true" : "false";
			c->len = strlen(c->val);
		} else if (cJSON_IsNull(item)) {
			c->val = NULL;
		} else {
			decode_err(err, errlen, "column \"%s\" is not a scalar",
			    c->name);
			return -1;
		}
	}
	return 0;
}

/* The images of one row, "o" and "n" in obj, as op requires them. */
static int
decode_row(const cJSON *obj, enum event_op op, struct row_image *old,
    struct row_image *new, char *err, size_t errlen)
{
	const cJSON *o = cJSON_GetObjectItemCaseSensitive(obj, "o");
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(obj, "n");

	if (op != EVENT_INSERT && o == NULL) {
		decode_err(err, errlen, "%s without old row (\"o\")",
		    op_names[op]);
		return -1;
	}
	if (op != EVENT_DELETE && n == NULL) {
		decode_err(err, errlen, "%s without new row (\"n\")",
		    op_names[op]);
		return -1;
	}
	if ((o != NULL && decode_image(o, old, err, errlen) == -1) ||
	    (n != NULL && decode_image(n, new, err, errlen) == -1))
		return -1;
	return 0;
}

enum decode_result
decode_event(const char *payload, size_t len, struct event *ev, char *err,
    size_t errlen)
{
	const cJSON *v, *t, *op, *ts, *big, *rows, *o;
	cJSON *root;
	const char *end = NULL;
	size_t i;

	memset(ev, 0, sizeof(*ev));
	err[0] = '\0';
	root = cJSON_ParseWithLengthOpts(payload, len, &end, 0);
	if (root == NULL) {
		decode_err(err, errlen, "not JSON");
		return DECODE_JUNK;
	}
	while (end < payload + len && strchr(" \t\r\n", *end) != NULL &&
	    *end != '\0')
		end++;
	if (end < payload + len) {
		decode_err(err, errlen, "text after the JSON object");
		cJSON_Delete(root);
		return DECODE_JUNK;
	}
	t = cJSON_GetObjectItemCaseSensitive(root, "t");
	if (!cJSON_IsObject(root) || !cJSON_IsString(t) ||
	    t->valuestring[0] == '\0' ||
	    strlen(t->valuestring) > DECODE_MAX_TABLE) {
		decode_err(err, errlen, "no table name (\"t\")");
		cJSON_Delete(root);
		return DECODE_JUNK;
	}
	ev->json = root;
	ev->table = t->valuestring;

	v = cJSON_GetObjectItemCaseSensitive(root, "v");
	if (!cJSON_IsNumber(v) || v->valuedouble != 1) {
		decode_err(err, errlen, "unknown payload version (\"v\" must be 1)");
		return DECODE_TABLE_ONLY;
	}
	op = cJSON_GetObjectItemCaseSensitive(root, "op");
	for (i = 0; i < sizeof(op_names) / sizeof(op_names[0]); i++)
		if (cJSON_IsString(op) && strcmp(op->valuestring, op_names[i]) == 0)
			break;
	if (i == sizeof(op_names) / sizeof(op_names[0])) {
		decode_err(err, errlen, "unknown operation (\"op\")");
		return DECODE_TABLE_ONLY;
	}
	ev->op = (enum event_op)i;

	ts = cJSON_GetObjectItemCaseSensitive(root, "ts");
	if (ts != NULL) {
		if (!cJSON_IsNumber(ts) || ts->valuedouble < 0 ||
		    ts->valuedouble > 9.2e18) {
			decode_err(err, errlen, "bad change time (\"ts\")");
			return DECODE_TABLE_ONLY;
		}
		ev->ts = (int64_t)ts->valuedouble;
	}
	big = cJSON_GetObjectItemCaseSensitive(root, "big");
	ev->big = cJSON_IsTrue(big);
	if (ev->big || ev->op == EVENT_TRUNCATE)
		return DECODE_OK;

	if (decode_has_nul_escape(payload, len)) {
		decode_err(err, errlen, "a value contains a NUL character");
		return DECODE_TABLE_ONLY;
	}
	rows = cJSON_GetObjectItemCaseSensitive(root, "rows");
	if (rows == NULL)
		return decode_row(root, ev->op, &ev->old, &ev->new, err,
		    errlen) == -1 ? DECODE_TABLE_ONLY : DECODE_OK;
	if (!cJSON_IsArray(rows) || cJSON_GetArraySize(rows) == 0) {
		decode_err(err, errlen, "\"rows\" is not a list of rows");
		return DECODE_TABLE_ONLY;
	}
	ev->rows = xcalloc((size_t)cJSON_GetArraySize(rows), sizeof(*ev->rows));
	cJSON_ArrayForEach(o, rows) {
		struct event_row *r = &ev->rows[ev->nrows++];

		if (!cJSON_IsObject(o) || decode_row(o, ev->op, &r->old, &r->new,
		    err, errlen) == -1) {
			if (!cJSON_IsObject(o))
				decode_err(err, errlen, "a row is not an object");
			return DECODE_TABLE_ONLY;
		}
	}
	return DECODE_OK;
}

void
decode_event_free(struct event *ev)
{
	free(ev->old.cols);
	free(ev->new.cols);
	for (size_t i = 0; i < ev->nrows; i++) {
		free(ev->rows[i].old.cols);
		free(ev->rows[i].new.cols);
	}
	free(ev->rows);
	cJSON_Delete(ev->json);
	memset(ev, 0, sizeof(*ev));
}
