/*
 * Message encoding, by hand rather than through cJSON: messages are built
 * on the hot path, and every string goes through one escaper, which keeps
 * keys byte-exact (only quotes, backslashes and control characters are
 * escaped).
 */
#include "message.h"

#include <string.h>

static void
message_image(struct buf *out, const char *name, const struct row_image *img)
{
	buf_adds(out, ",\"");
	buf_adds(out, name);
	buf_adds(out, "\":{");
	for (size_t i = 0; i < img->n; i++) {
		const struct row_col *c = &img->cols[i];

		if (i > 0)
			buf_addc(out, ',');
		buf_add_json_str(out, c->name, strlen(c->name));
		buf_addc(out, ':');
		if (c->val == NULL)
			buf_adds(out, "null");
		else
			buf_add_json_str(out, c->val, c->len);
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
		buf_add_json_str(out, table, strlen(table));
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
		buf_add_json_str(out, k, len);
	}
}

static void
message_row_images(struct buf *out, const struct row_image *old,
    const struct row_image *new)
{
	size_t start = out->len;

	buf_addc(out, '{');
	if (old->present)
		message_image(out, "old", old);
	if (new->present)
		message_image(out, "new", new);
	/* message_image leads with a comma; an object must not. */
	if (out->len > start + 1)
		memmove(out->data + start + 1, out->data + start + 2,
		    out->len-- - start - 2);
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
	buf_add_json_str(out, reason, message_utf8_uncut(reason, strlen(reason)));
	buf_addc(out, '}');
}

void
message_frame(struct buf *out, uint64_t seq, const char *epoch,
    const char *body, size_t len)
{
	buf_reserve(out, len + 64 + MESSAGE_EPOCH_LEN);
	buf_adds(out, "{\"v\":1,\"seq\":");
	buf_add_u64(out, seq);
	buf_adds(out, ",\"epoch\":\"");
	buf_adds(out, epoch);
	buf_adds(out, "\",");
	buf_add(out, body, len);
}
