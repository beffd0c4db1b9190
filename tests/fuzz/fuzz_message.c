/*
 * Fuzzing of message_parse(), the reader of the channel's messages.
 *
 * The input is read as a message, from an exact-size buffer with no
 * terminator, so that any read past len is caught; what was read must be
 * consistent (every string as long as it says, seq and ts in range), and
 * the same when read again into a struct that held another message. The
 * input is also decoded as a trigger payload, and whatever decodes goes
 * around the round trip of roundtrip.h: the message message.c encodes
 * from the event must read back to the same fields.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "roundtrip.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char other[] = "{\"v\":1,\"seq\":3,\"epoch\":\"e\",\"op\":\"update\","
    "\"table\":\"a.b\",\"keys\":[\"k1\",\"k2\"],\"ts\":5,\"reason\":\"r\","
    "\"rows\":[{\"old\":{\"a\":\"1\"}},{\"new\":{\"b\":null}}]}";

static void
add_str(struct buf *b, const char *s)
{
	if (s == NULL) {
		buf_adds(b, "-|");
		return;
	}
	buf_add(b, s, strlen(s) + 1);
}

static void
add_num(struct buf *b, uint64_t n)
{
	buf_add(b, &n, sizeof(n));
}

static void
add_image(struct buf *b, const struct message_image *img)
{
	add_num(b, img->present);
	add_num(b, img->n);
	if (img->n > 0 && img->cols == NULL)
		fail("image without its columns", NULL, 0);
	for (size_t i = 0; i < img->n; i++) {
		const struct message_col *c = &img->cols[i];

		if (c->val != NULL && strlen(c->val) != c->len)
			fail("column value length is wrong", NULL, 0);
		add_str(b, c->name);
		add_str(b, c->val);
	}
}

/* Everything read from a message, checked, into b. */
static void
summary(struct buf *b, const struct message *m, size_t len)
{
	if (m->end > len)
		fail("read past the end", NULL, 0);
	if ((double)m->seq > MESSAGE_SEQ_MAX)
		fail("seq out of range", NULL, 0);
	if (m->has_ts ? m->ts < 0 || (double)m->ts > MESSAGE_TS_MAX : m->ts != 0)
		fail("ts out of range", NULL, 0);
	if (!m->keys_array && m->nkeys != 0)
		fail("keys without an array", NULL, 0);
	if (message_has_seq(m) != (m->seq != 0 && m->epoch != NULL))
		fail("message_has_seq() is wrong", NULL, 0);
	add_num(b, m->seq);
	add_num(b, (uint64_t)m->ts);
	add_num(b, m->has_ts);
	add_num(b, m->end);
	add_str(b, m->epoch);
	add_str(b, m->op);
	add_str(b, m->table);
	add_str(b, m->reason);
	add_num(b, m->keys_array);
	add_num(b, m->nkeys);
	for (size_t i = 0; i < m->nkeys; i++) {
		if (strlen(m->keys[i].s) != m->keys[i].len)
			fail("key length is wrong", NULL, 0);
		add_str(b, m->keys[i].s);
	}
	add_image(b, &m->old);
	add_image(b, &m->new);
	add_num(b, m->nrows);
	for (size_t i = 0; i < m->nrows; i++) {
		add_image(b, &m->rows[i].old);
		add_image(b, &m->rows[i].new);
	}
}

/* Reads text[0..len) into m; the summary, or "" when refused. */
static void
read_message(struct message *m, const char *text, size_t len, struct buf *b)
{
	char err[128];

	memset(err, 'x', sizeof(err));
	if (message_parse(m, text, len, err, sizeof(err)) == 0) {
		summary(b, m, len);
		return;
	}
	if (memchr(err, '\0', sizeof(err)) == NULL ||
	    strncmp(err, "not JSON: ", 10) != 0)
		fail("a refusal without its reason", text, len);
	if (m->seq != 0 || m->epoch != NULL || m->op != NULL ||
	    m->keys_array || m->nkeys != 0 || m->nrows != 0 ||
	    m->old.present || m->new.present)
		fail("a refused message kept members", text, len);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	roundtrip_init();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct message fresh, reused;
	struct buf first = { 0 }, again = { 0 }, scratch = { 0 };
	char *exact = malloc(size ? size : 1);

	if (exact == NULL)
		abort();
	memcpy(exact, data, size);
	read_message(&fresh, exact, size, &first);
	message_free(&fresh);
	read_message(&reused, other, strlen(other), &scratch);
	read_message(&reused, exact, size, &again);
	if (first.len != again.len || (first.len > 0 &&
	    memcmp(first.data, again.data, first.len) != 0))
		fail("read differently into a struct used before", exact, size);
	roundtrip(exact, size);
	free(exact);
	buf_free(&first);
	buf_free(&again);
	buf_free(&scratch);
	return 0;
}
