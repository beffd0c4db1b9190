/*
 * The round trip of the message format, shared by the harnesses that
 * decode payloads (fuzz_decode.c, fuzz_message.c): whatever decodes is
 * turned into the message the daemon would PUBLISH, and that message must
 * read back with message_parse(), the subscribers' reader, to the same
 * table, keys, time and row values. Every message we publish has to parse
 * on the subscriber's side, and say what it was built to say.
 *
 * Static functions for one harness each; call roundtrip_init() first.
 */
#ifndef PGINVAL_FUZZ_ROUNDTRIP_H
#define PGINVAL_FUZZ_ROUNDTRIP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../daemon/lib/buf.h"
#include "../../daemon/core/decode.h"
#include "../../daemon/core/message.h"
#include "../../daemon/core/rules.h"

#define EPOCH "0123456789abcdef0123456789abcdef"

static struct rule_set *rules;
/* Set for each input: whether the payload is well-formed UTF-8, in which
 * case the message must be too (JSON exchanged between systems is UTF-8,
 * and strict subscribers reject anything else). */
static int input_utf8;
/* Read into again for every message, as subscribers do. */
static struct message roundtrip_msg;

static void
fail(const char *what, const char *text, size_t len)
{
	fprintf(stderr, "fuzz: %s\n", what);
	if (text != NULL)
		fprintf(stderr, "message (%zu bytes): %.*s\n", len, (int)len, text);
	abort();
}

static void
roundtrip_init(void)
{
	char err[256];

	if (rules_compile("k:{id}, e:{email}", &rules, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz: rules_compile: %s\n", err);
		exit(1);
	}
}

/* Whether s[0..len) is well-formed UTF-8 (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF). */
static int
utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;

	while (p < end) {
		unsigned char c = *p++;
		size_t more;
		unsigned long cp, min;

		if (c < 0x80)
			continue;
		if (c >= 0xc2 && c <= 0xdf) {
			more = 1;
			cp = c & 0x1f;
			min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			more = 2;
			cp = c & 0x0f;
			min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			more = 3;
			cp = c & 0x07;
			min = 0x10000;
		} else {
			return 0;
		}
		if ((size_t)(end - p) < more)
			return 0;
		for (size_t i = 0; i < more; i++, p++) {
			if ((*p & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (*p & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
	}
	return 1;
}

/* Whether s is a string holding exactly want[0..len). */
static int
str_is(const char *s, const char *want, size_t len)
{
	return s != NULL && strlen(s) == len && memcmp(s, want, len) == 0;
}

/* Reads a complete message (one JSON object and nothing after it) into
 * roundtrip_msg, and checks its envelope. */
static struct message *
parse_message(const struct buf *msg, uint64_t seq)
{
	struct message *m = &roundtrip_msg;
	char err[128];

	if (msg->data == NULL || strlen(msg->data) != msg->len)
		fail("message is empty or holds a NUL byte", msg->data, msg->len);
	if (input_utf8 && !utf8_valid(msg->data, msg->len))
		fail("UTF-8 payload gave a message that is not UTF-8", msg->data,
		    msg->len);
	if (message_parse(m, msg->data, msg->len, err, sizeof(err)) == -1)
		fail(err, msg->data, msg->len);
	if (m->end != msg->len || msg->data[0] != '{')
		fail("message is not one JSON object", msg->data, msg->len);
	if (strncmp(msg->data, "{\"v\":1,", 7) != 0 || m->seq != seq ||
	    !str_is(m->epoch, EPOCH, strlen(EPOCH)))
		fail("message envelope is wrong", msg->data, msg->len);
	return m;
}

static void
check_image(const struct buf *msg, const struct message_image *got,
    const struct row_image *img)
{
	if (!img->present) {
		if (got->present)
			fail("message has a row image the event lacks", msg->data,
			    msg->len);
		return;
	}
	if (!got->present)
		fail("row image missing from the message", msg->data, msg->len);
	if (got->n != img->n)
		fail("row image lost or gained columns", msg->data, msg->len);
	for (size_t i = 0; i < img->n; i++) {
		const struct row_col *c = &img->cols[i];

		if (strcmp(got->cols[i].name, c->name) != 0)
			fail("column name changed", msg->data, msg->len);
		if (c->val == NULL ? got->cols[i].val != NULL :
		    got->cols[i].len != c->len ||
		    !str_is(got->cols[i].val, c->val, c->len))
			fail("column value changed", msg->data, msg->len);
	}
}

/* The images of the event's rows: a single row's at the top of the
 * message, several rows' in "rows". */
static void
check_rows(const struct buf *msg, const struct message *m,
    const struct event *ev)
{
	static const struct row_image absent = { false, 0, NULL };

	if (ev->nrows <= 1) {
		if (m->nrows != 0)
			fail("message has rows the event lacks", msg->data,
			    msg->len);
		check_image(msg, &m->old, ev->nrows == 1 ? &ev->rows[0].old :
		    &ev->old);
		check_image(msg, &m->new, ev->nrows == 1 ? &ev->rows[0].new :
		    &ev->new);
		return;
	}
	check_image(msg, &m->old, &absent);
	check_image(msg, &m->new, &absent);
	if (m->nrows != ev->nrows)
		fail("message lost or gained rows", msg->data, msg->len);
	for (size_t i = 0; i < ev->nrows; i++) {
		check_image(msg, &m->rows[i].old, &ev->rows[i].old);
		check_image(msg, &m->rows[i].new, &ev->rows[i].new);
	}
}

/* The message for a decoded event, as the daemon builds it. */
static void
roundtrip_event(const struct event *ev)
{
	struct keys keys = { 0 };
	struct buf body = { 0 }, msg = { 0 };
	const struct message *m;
	char err[256];

	if (ev->op != EVENT_TRUNCATE && !ev->big &&
	    rules_render(rules, ev, &keys, err, sizeof(err)) == -1) {
		if (memchr(err, '\0', sizeof(err)) == NULL)
			fail("rules_render err not NUL-terminated", NULL, 0);
		keys_reset(&keys);
	}
	message_body_event(&body, ev, &keys);
	message_frame(&msg, 1842, EPOCH, body.data, body.len);
	m = parse_message(&msg, 1842);

	if (!str_is(m->op, event_op_name(ev->op), strlen(event_op_name(ev->op))) ||
	    !str_is(m->table, ev->table, strlen(ev->table)))
		fail("op or table changed", msg.data, msg.len);
	/* decode_event() keeps ts in the range a message can carry. */
	if (!m->has_ts || m->ts != ev->ts)
		fail("ts changed", msg.data, msg.len);
	if (!m->keys_array || m->nkeys != keys.n)
		fail("message lost or gained keys", msg.data, msg.len);
	for (size_t i = 0; i < keys.n; i++) {
		size_t len;
		const char *k = keys_get(&keys, i, &len);

		if (m->keys[i].len != len || !str_is(m->keys[i].s, k, len))
			fail("key changed", msg.data, msg.len);
	}
	if (m->reason != NULL)
		fail("an event with a reason", msg.data, msg.len);
	check_rows(&msg, m, ev);

	buf_free(&msg);
	buf_free(&body);
	keys_free(&keys);
}

/* The reset sent for a table whose event could not be used. */
static void
roundtrip_reset(const char *table, const char *reason, int64_t ts)
{
	struct buf body = { 0 }, msg = { 0 };
	const struct message *m;
	size_t len = strlen(reason), wlen;

	message_body_reset(&body, table, reason, ts);
	message_frame(&msg, 7, EPOCH, body.data, body.len);
	m = parse_message(&msg, 7);
	if (!str_is(m->op, "reset", 5) ||
	    !str_is(m->table, table, strlen(table)) ||
	    !m->keys_array || m->nkeys != 0 || m->ts != ts)
		fail("reset message changed", msg.data, msg.len);
	/* The reason, less at most a character cut off at its end. */
	if (m->reason == NULL)
		fail("reset without a reason", msg.data, msg.len);
	wlen = strlen(m->reason);
	if (wlen > len || wlen + 3 < len || memcmp(m->reason, reason, wlen) != 0)
		fail("reset reason changed", msg.data, msg.len);
	buf_free(&msg);
	buf_free(&body);
}

/* Every value of img is as long as it says. */
static void
check_lengths(const struct row_image *img)
{
	for (size_t i = 0; i < img->n; i++)
		if (img->cols[i].val != NULL &&
		    img->cols[i].val[img->cols[i].len] != '\0')
			fail("value length is wrong", NULL, 0);
}

/*
 * Decodes payload[0..len) as the daemon does, and sends whatever decodes
 * around the round trip.
 */
static void
roundtrip(const char *payload, size_t len)
{
	struct event ev;
	char err[256];
	enum decode_result r;

	input_utf8 = utf8_valid(payload, len);
	memset(err, 'x', sizeof(err));
	r = decode_event(payload, len, &ev, err, sizeof(err));
	if (memchr(err, '\0', sizeof(err)) == NULL)
		fail("err is not NUL-terminated", NULL, 0);
	switch (r) {
	case DECODE_OK:
		if (ev.table == NULL || ev.table[0] == '\0' || err[0] != '\0')
			fail("DECODE_OK without a table, or with an error", NULL, 0);
		check_lengths(&ev.old);
		check_lengths(&ev.new);
		for (size_t i = 0; i < ev.nrows; i++) {
			check_lengths(&ev.rows[i].old);
			check_lengths(&ev.rows[i].new);
		}
		roundtrip_event(&ev);
		decode_event_free(&ev);
		break;
	case DECODE_TABLE_ONLY:
		if (ev.table == NULL || ev.table[0] == '\0' || err[0] == '\0')
			fail("DECODE_TABLE_ONLY without a table or a reason", NULL, 0);
		roundtrip_reset(ev.table, err, ev.ts);
		decode_event_free(&ev);
		break;
	case DECODE_JUNK:
		if (ev.json != NULL || ev.table != NULL || err[0] == '\0')
			fail("DECODE_JUNK kept something, or gave no reason", NULL, 0);
		break;
	default:
		fail("decode_event returned an unknown result", NULL, 0);
	}
}

#endif
