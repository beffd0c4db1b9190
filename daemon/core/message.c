/*
 * Messages both ways. Encoding is done by hand: messages are built on the
 * hot path, and every string goes through one escaper, which keeps keys
 * byte-exact (only quotes, backslashes and control characters are
 * escaped). Reading is one pass with json_read, the reader of the
 * triggers' payloads too, the strings unescaped into one buffer; what
 * subscribers accept is what they accepted when they read messages with
 * a general JSON library (cJSON, before json_read replaced it).
 */
#include "core/message.h"
#include "lib/json_read.h"
#include "lib/json_write.h"
#include "lib/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends "name":{..}, after a comma unless first. */
static void
message_image(struct buf *out, const char *name, const struct row_image *img,
    bool first)
{
	buf_adds(out, first ? "\"" : ",\"");
	buf_adds(out, name);
	buf_adds(out, "\":{");
	for (size_t i = 0; i < img->n; i++) {
		const struct row_col *c = &img->cols[i];

		if (i > 0)
			buf_addc(out, ',');
		json_write_str(out, c->name, strlen(c->name));
		buf_addc(out, ':');
		if (c->val == NULL)
			buf_adds(out, "null");
		else
			json_write_str(out, c->val, c->len);
	}
	buf_addc(out, '}');
}

static void
message_head(struct buf *out, const char *op, const char *table)
{
	buf_adds(out, "\"op\":\"");
	buf_adds(out, op);
	buf_adds(out, "\",\"table\":");
	if (table == NULL)
		buf_adds(out, "null");
	else
		json_write_str(out, table, strlen(table));
	buf_adds(out, ",\"keys\":[");
}

static void
message_keys(struct buf *out, const struct keys *keys)
{
	for (size_t i = 0; keys != NULL && i < keys->n; i++) {
		size_t len;
		const char *k = keys_get(keys, i, &len);

		if (i > 0)
			buf_addc(out, ',');
		json_write_str(out, k, len);
	}
}

static void
message_row_images(struct buf *out, const struct row_image *old,
    const struct row_image *new)
{
	size_t start = out->len;

	buf_addc(out, '{');
	if (old->present)
		message_image(out, "old", old, true);
	if (row_image_shared(old, new)) {
		/* The same image: its text once more, not escaped again. */
		size_t from = start + 1 + strlen("\"old\":");
		size_t n = out->len - from;

		buf_adds(out, ",\"new\":");
		buf_reserve(out, n);
		memcpy(out->data + out->len, out->data + from, n);
		out->len += n;
		out->data[out->len] = '\0';
	} else if (new->present) {
		message_image(out, "new", new, !old->present);
	}
	buf_addc(out, '}');
}

size_t
message_rows(struct buf *out, const struct event *ev)
{
	if (ev->nrows == 0) {
		message_row_images(out, &ev->old, &ev->new);
		return 1;
	}
	for (size_t i = 0; i < ev->nrows; i++) {
		if (i > 0)
			buf_addc(out, ',');
		message_row_images(out, &ev->rows[i].old, &ev->rows[i].new);
	}
	return ev->nrows;
}

void
message_body_rows(struct buf *out, const char *op, const char *table,
    const struct keys *keys, int64_t ts, const char *rows, size_t rowslen,
    size_t nrows)
{
	message_head(out, op, table);
	message_keys(out, keys);
	buf_adds(out, "],\"ts\":");
	buf_add_i64(out, ts);
	if (nrows == 1 && rowslen > 2) {
		buf_addc(out, ',');
		buf_add(out, rows + 1, rowslen - 2);	/* without its braces */
	} else if (nrows > 1) {
		buf_adds(out, ",\"rows\":[");
		buf_add(out, rows, rowslen);
		buf_addc(out, ']');
	}
	buf_addc(out, '}');
}

void
message_body_event(struct buf *out, const struct event *ev,
    const struct keys *keys)
{
	struct buf rows = { 0 };
	size_t n = message_rows(&rows, ev);

	message_body_rows(out, event_op_name(ev->op), ev->table, keys, ev->ts,
	    rows.data, rows.len, n);
	buf_free(&rows);
}

/*
 * The length of s[0..n) without a UTF-8 character cut in two at its end.
 * Reasons are written into fixed-size buffers, which may cut one; the
 * message must stay UTF-8 all the same (JSON is exchanged as UTF-8, and
 * strict subscribers reject anything else).
 */
static size_t
message_utf8_uncut(const char *s, size_t n)
{
	size_t i = n, cont = 0, need;
	unsigned char lead;

	while (i > 0 && cont < 3 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) {
		i--;
		cont++;
	}
	if (i == 0)
		return n;
	lead = (unsigned char)s[i - 1];
	if (lead < 0xc0)
		return n;	/* not a cut character */
	need = lead >= 0xf0 ? 3 : lead >= 0xe0 ? 2 : 1;
	return cont < need ? i - 1 : n;
}

void
message_body_reset(struct buf *out, const char *table, const char *reason,
    int64_t ts)
{
	message_head(out, "reset", table);
	buf_adds(out, "],\"ts\":");
	buf_add_i64(out, ts);
	buf_adds(out, ",\"reason\":");
	json_write_str(out, reason, message_utf8_uncut(reason, strlen(reason)));
	buf_addc(out, '}');
}

void
message_envelope(struct buf *out, uint64_t seq, const char *epoch)
{
	buf_adds(out, "{\"v\":1,\"seq\":");
	buf_add_u64(out, seq);
	buf_adds(out, ",\"epoch\":\"");
	buf_adds(out, epoch);
	buf_adds(out, "\",");
}

void
message_frame(struct buf *out, uint64_t seq, const char *epoch,
    const char *body, size_t len)
{
	buf_reserve(out, len + 64 + MESSAGE_EPOCH_LEN);
	message_envelope(out, seq, epoch);
	buf_add(out, body, len);
}

/* -- reading ------------------------------------------------------------ */

enum message_field {
	FIELD_SEQ, FIELD_EPOCH, FIELD_OP, FIELD_TABLE, FIELD_TS, FIELD_REASON,
	FIELD_KEYS, FIELD_OLD, FIELD_NEW, FIELD_ROWS, FIELD_COUNT,
};

static const char *const message_fields[FIELD_COUNT] = {
	[FIELD_SEQ] = "seq", [FIELD_EPOCH] = "epoch", [FIELD_OP] = "op",
	[FIELD_TABLE] = "table", [FIELD_TS] = "ts", [FIELD_REASON] = "reason",
	[FIELD_KEYS] = "keys", [FIELD_OLD] = "old", [FIELD_NEW] = "new",
	[FIELD_ROWS] = "rows",
};

struct message_parser {
	struct json_reader rd;
	struct message *m;
};

/* Grows *p, an array of *cap elements of size each, to hold n + 1. */
static void *
message_grow(void *p, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return p;
	*cap = *cap ? *cap * 2 : 8;
	return xrealloc(p, *cap * size);
}

static bool
message_key_is(const struct json_val *key, const char *name)
{
	return key->len == strlen(name) && memcmp(key->s, name, key->len) == 0;
}

static const char *
message_str(const struct json_val *v)
{
	return v->type == JSON_STRING ? v->s : NULL;
}

/* The members of an object, the image's columns if strings or null. */
static int
message_parse_image(struct message_parser *ps, struct message_image *img)
{
	struct message_mem *mem = &ps->m->mem;
	struct json_val key, v;
	int r;

	if (!json_open(&ps->rd))
		return -1;
	img->present = true;
	img->first = mem->ncols;
	while ((r = json_next_member(&ps->rd, '}', &key)) == 1) {
		if (json_value(&ps->rd, &v) == -1)
			return -1;
		if (v.type != JSON_STRING && v.type != JSON_NULL)
			continue;
		mem->cols = message_grow(mem->cols, &mem->cols_cap, mem->ncols,
		    sizeof(*mem->cols));
		mem->cols[mem->ncols++] = (struct message_col){ key.s,
		    message_str(&v), v.len };
		img->n++;
	}
	return r;
}

/* An element of "rows": an object with "old" and "new" images. */
static int
message_parse_row(struct message_parser *ps, struct message_row *row)
{
	struct json_val key;
	bool old = false, new = false;
	int r;

	if (json_peek(&ps->rd) != '{')
		return json_skip_value(&ps->rd);
	if (!json_open(&ps->rd))
		return -1;
	while ((r = json_next_member(&ps->rd, '}', &key)) == 1) {
		struct message_image *img = NULL;

		if (!old && message_key_is(&key, "old")) {
			old = true;
			img = &row->old;
		} else if (!new && message_key_is(&key, "new")) {
			new = true;
			img = &row->new;
		}
		if (img != NULL && json_peek(&ps->rd) == '{')
			r = message_parse_image(ps, img);
		else
			r = json_skip_value(&ps->rd);
		if (r == -1)
			return -1;
	}
	return r;
}

static int
message_parse_rows(struct message_parser *ps)
{
	struct message *m = ps->m;
	struct json_val none;
	int r;

	if (!json_open(&ps->rd))
		return -1;
	while ((r = json_next_member(&ps->rd, ']', &none)) == 1) {
		m->mem.rows = message_grow(m->mem.rows, &m->mem.rows_cap,
		    m->nrows, sizeof(*m->mem.rows));
		memset(&m->mem.rows[m->nrows], 0, sizeof(*m->mem.rows));
		/* A row holds no rows: the array does not move meanwhile. */
		if (message_parse_row(ps, &m->mem.rows[m->nrows++]) == -1)
			return -1;
	}
	return r;
}

static int
message_parse_keys(struct message_parser *ps)
{
	struct message *m = ps->m;
	struct json_val v;
	int r;

	if (!json_open(&ps->rd))
		return -1;
	m->keys_array = true;
	while ((r = json_next_member(&ps->rd, ']', &v)) == 1) {
		if (json_value(&ps->rd, &v) == -1)
			return -1;
		if (v.type != JSON_STRING)
			continue;
		m->mem.keys = message_grow(m->mem.keys, &m->mem.keys_cap,
		    m->nkeys, sizeof(*m->mem.keys));
		m->mem.keys[m->nkeys++] = (struct message_key){ v.s, v.len };
	}
	return r;
}

/* The value of the first member named for field f. */
static int
message_parse_field(struct message_parser *ps, enum message_field f)
{
	struct message *m = ps->m;
	struct json_val v = { 0 };
	int c = json_peek(&ps->rd);

	if (f == FIELD_KEYS && c == '[')
		return message_parse_keys(ps);
	if (f == FIELD_ROWS && c == '[')
		return message_parse_rows(ps);
	if ((f == FIELD_OLD || f == FIELD_NEW) && c == '{')
		return message_parse_image(ps, f == FIELD_OLD ? &m->old : &m->new);
	if (json_value(&ps->rd, &v) == -1)
		return -1;
	switch (f) {
	case FIELD_SEQ:
		if (v.type == JSON_NUMBER && v.d >= 1 && v.d <= MESSAGE_SEQ_MAX)
			m->seq = (uint64_t)v.d;
		break;
	case FIELD_TS:
		if (v.type == JSON_NUMBER && v.d >= 0 && v.d <= MESSAGE_TS_MAX) {
			m->ts = (int64_t)v.d;
			m->has_ts = true;
		}
		break;
	case FIELD_EPOCH: m->epoch = message_str(&v); break;
	case FIELD_OP: m->op = message_str(&v); break;
	case FIELD_TABLE: m->table = message_str(&v); break;
	case FIELD_REASON: m->reason = message_str(&v); break;
	default: break;
	}
	return 0;
}

static int
message_parse_root(struct message_parser *ps)
{
	struct json_val key;
	unsigned seen = 0;
	int r;

	if (!json_open(&ps->rd))
		return -1;
	while ((r = json_next_member(&ps->rd, '}', &key)) == 1) {
		size_t f = 0;

		while (f < FIELD_COUNT && !message_key_is(&key, message_fields[f]))
			f++;
		if (f == FIELD_COUNT || (seen & 1u << f)) {
			r = json_skip_value(&ps->rd);
		} else {
			seen |= 1u << f;
			r = message_parse_field(ps, (enum message_field)f);
		}
		if (r == -1)
			return -1;
	}
	return r;
}

/* Every member cleared, the buffers kept. */
static void
message_clear(struct message *m)
{
	struct message_mem mem = m->mem;

	memset(m, 0, sizeof(*m));
	mem.ncols = 0;
	m->mem = mem;
}

static void
message_fix_image(struct message *m, struct message_image *img)
{
	img->cols = img->n > 0 ? m->mem.cols + img->first : NULL;
}

int
message_parse(struct message *m, const char *text, size_t len, char *err,
    size_t errlen)
{
	struct message_parser ps = { .m = m };
	const unsigned char *start = (const unsigned char *)text;
	int r;

	message_clear(m);
	if (len == 0 || len == SIZE_MAX) {
		snprintf(err, errlen, "not JSON: %s", len ? "too long" : "empty");
		return -1;
	}
	/* Unescaped, no string takes more room than it did in the text. */
	if (m->mem.text_cap < len + 1) {
		free(m->mem.text);
		m->mem.text = xmalloc(len + 1);
		m->mem.text_cap = len + 1;
	}
	ps.rd.text = m->mem.text;
	ps.rd.p = start;
	ps.rd.end = start + len;
	/* A UTF-8 byte order mark, skipped when more follows. */
	if (len > 4 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		ps.rd.p += 3;
	json_skip_blanks(&ps.rd);
	r = json_peek(&ps.rd) == '{' ? message_parse_root(&ps) :
	    json_skip_value(&ps.rd);
	if (r == -1) {
		snprintf(err, errlen, "not JSON: bad syntax near byte %zu",
		    (size_t)(ps.rd.p - start));
		message_clear(m);
		return -1;
	}
	json_skip_blanks(&ps.rd);
	m->end = (size_t)(ps.rd.p - start);
	m->keys = m->mem.keys;
	m->rows = m->mem.rows;
	message_fix_image(m, &m->old);
	message_fix_image(m, &m->new);
	for (size_t i = 0; i < m->nrows; i++) {
		message_fix_image(m, &m->mem.rows[i].old);
		message_fix_image(m, &m->mem.rows[i].new);
	}
	return 0;
}

void
message_free(struct message *m)
{
	free(m->mem.text);
	free(m->mem.keys);
	free(m->mem.cols);
	free(m->mem.rows);
	memset(m, 0, sizeof(*m));
}

/* -- the gap rules ------------------------------------------------------ */

bool
message_has_seq(const struct message *m)
{
	return m->epoch != NULL && m->seq != 0;
}

enum message_gap
message_seq_test(const struct message_seq *s, const char *epoch,
    uint64_t seq)
{
	if (s->epoch[0] == '\0')
		return MESSAGE_GAP_NONE;
	if (strcmp(s->epoch, epoch) != 0)
		return seq == 1 ? MESSAGE_GAP_NONE : MESSAGE_GAP_EPOCH;
	if (seq <= s->last)
		return MESSAGE_GAP_REPEAT;
	return seq == s->last + 1 ? MESSAGE_GAP_NONE : MESSAGE_GAP_SEQ;
}

enum message_gap
message_seq_check(struct message_seq *s, const char *epoch, uint64_t seq)
{
	enum message_gap gap = message_seq_test(s, epoch, seq);

	snprintf(s->epoch, sizeof(s->epoch), "%s", epoch);
	s->last = seq;
	return gap;
}

void
message_seq_forget(struct message_seq *s)
{
	s->epoch[0] = '\0';
	s->last = 0;
}
