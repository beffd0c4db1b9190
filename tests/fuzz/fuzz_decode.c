/*
 * Fuzzing of decode_event() and of the messages built from its events.
 *
 * The input is decoded twice: as a NUL-terminated string (the way NOTIFY
 * payloads arrive) and as an exact-size buffer with no terminator, so that
 * any read past len is caught. Whatever decodes is turned into the message
 * the daemon would PUBLISH, and that message must be JSON that reads back
 * to the same table, keys, time and row values: every message we publish
 * has to parse on the subscriber's side.
 */
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../daemon/buf.h"
#include "../../daemon/decode.h"
#include "../../daemon/message.h"
#include "../../daemon/rules.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define EPOCH "0123456789abcdef0123456789abcdef"

static struct rule_set *rules;

static void
fail(const char *what, const char *text, size_t len)
{
	fprintf(stderr, "fuzz_decode: %s\n", what);
	if (text != NULL)
		fprintf(stderr, "message (%zu bytes): %.*s\n", len, (int)len, text);
	abort();
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

/* Set for each input: whether the payload is well-formed UTF-8, in which
 * case the message must be too (JSON exchanged between systems is UTF-8,
 * and strict subscribers reject anything else). */
static int input_utf8;

/* Whether item is a string holding exactly s[0..len). */
static int
json_str_is(const cJSON *item, const char *s, size_t len)
{
	return cJSON_IsString(item) && strlen(item->valuestring) == len &&
	    memcmp(item->valuestring, s, len) == 0;
}

/* Parses a complete message: one JSON object and nothing after it. */
static cJSON *
parse_message(const struct buf *msg)
{
	const char *end = NULL;
	cJSON *root;

	if (msg->data == NULL || strlen(msg->data) != msg->len)
		fail("message is empty or holds a NUL byte", msg->data, msg->len);
	if (input_utf8 && !utf8_valid(msg->data, msg->len))
		fail("UTF-8 payload gave a message that is not UTF-8", msg->data,
		    msg->len);
	root = cJSON_ParseWithLengthOpts(msg->data, msg->len + 1, &end, 1);
	if (root == NULL || !cJSON_IsObject(root))
		fail("message is not a JSON object", msg->data, msg->len);
	if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(root, "v")) ||
	    !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(root, "seq")) ||
	    !json_str_is(cJSON_GetObjectItemCaseSensitive(root, "epoch"),
	    EPOCH, strlen(EPOCH)))
		fail("message envelope is wrong", msg->data, msg->len);
	return root;
}

static void
check_image(const struct buf *msg, const cJSON *obj,
    const struct row_image *img)
{
	const cJSON *item;
	size_t i = 0;

	if (!img->present) {
		if (obj != NULL)
			fail("message has a row image the event lacks", msg->data,
			    msg->len);
		return;
	}
	if (!cJSON_IsObject(obj))
		fail("row image missing from the message", msg->data, msg->len);
	cJSON_ArrayForEach(item, obj) {
		const struct row_col *c;

		if (i >= img->n)
			fail("row image has extra columns", msg->data, msg->len);
		c = &img->cols[i++];
		if (item->string == NULL || strcmp(item->string, c->name) != 0)
			fail("column name changed", msg->data, msg->len);
		if (c->val == NULL ? !cJSON_IsNull(item) :
		    !json_str_is(item, c->val, c->len))
			fail("column value changed", msg->data, msg->len);
	}
	if (i != img->n)
		fail("row image lost columns", msg->data, msg->len);
}

/* The images of the event's rows: a single row's at the top of the
 * message, several rows' in "rows". */
static void
check_rows(const struct buf *msg, const cJSON *root, const struct event *ev)
{
	static const struct row_image absent = { false, 0, NULL };
	const cJSON *rows = cJSON_GetObjectItemCaseSensitive(root, "rows");
	const cJSON *item;
	size_t i = 0;

	if (ev->nrows <= 1) {
		if (rows != NULL)
			fail("message has rows the event lacks", msg->data,
			    msg->len);
		check_image(msg, cJSON_GetObjectItemCaseSensitive(root, "old"),
		    ev->nrows == 1 ? &ev->rows[0].old : &ev->old);
		check_image(msg, cJSON_GetObjectItemCaseSensitive(root, "new"),
		    ev->nrows == 1 ? &ev->rows[0].new : &ev->new);
		return;
	}
	check_image(msg, cJSON_GetObjectItemCaseSensitive(root, "old"), &absent);
	check_image(msg, cJSON_GetObjectItemCaseSensitive(root, "new"), &absent);
	if (!cJSON_IsArray(rows))
		fail("message lost its rows", msg->data, msg->len);
	cJSON_ArrayForEach(item, rows) {
		if (i >= ev->nrows || !cJSON_IsObject(item))
			fail("message has extra rows", msg->data, msg->len);
		check_image(msg, cJSON_GetObjectItemCaseSensitive(item, "old"),
		    &ev->rows[i].old);
		check_image(msg, cJSON_GetObjectItemCaseSensitive(item, "new"),
		    &ev->rows[i].new);
		i++;
	}
	if (i != ev->nrows)
		fail("message lost rows", msg->data, msg->len);
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

/* The message for a decoded event, as the daemon builds it. */
static void
check_event(const struct event *ev)
{
	struct keys keys = { 0 };
	struct buf body = { 0 }, msg = { 0 };
	const cJSON *item, *arr;
	cJSON *root;
	char err[256];
	size_t i = 0;

	if (ev->op != EVENT_TRUNCATE && !ev->big &&
	    rules_render(rules, ev, &keys, err, sizeof(err)) == -1) {
		if (memchr(err, '\0', sizeof(err)) == NULL)
			fail("rules_render err not NUL-terminated", NULL, 0);
		keys_reset(&keys);
	}
	message_body_event(&body, ev, &keys);
	message_frame(&msg, 1842, EPOCH, body.data, body.len);
	root = parse_message(&msg);

	if (!json_str_is(cJSON_GetObjectItemCaseSensitive(root, "op"),
	    event_op_name(ev->op), strlen(event_op_name(ev->op))) ||
	    !json_str_is(cJSON_GetObjectItemCaseSensitive(root, "table"),
	    ev->table, strlen(ev->table)))
		fail("op or table changed", msg.data, msg.len);
	item = cJSON_GetObjectItemCaseSensitive(root, "ts");
	if (!cJSON_IsNumber(item) || item->valuedouble != (double)ev->ts)
		fail("ts changed", msg.data, msg.len);
	arr = cJSON_GetObjectItemCaseSensitive(root, "keys");
	if (!cJSON_IsArray(arr))
		fail("keys is not an array", msg.data, msg.len);
	cJSON_ArrayForEach(item, arr) {
		size_t len;
		const char *k;

		if (i >= keys.n)
			fail("message has extra keys", msg.data, msg.len);
		k = keys_get(&keys, i++, &len);
		if (!json_str_is(item, k, len))
			fail("key changed", msg.data, msg.len);
	}
	if (i != keys.n)
		fail("message lost keys", msg.data, msg.len);
	check_rows(&msg, root, ev);

	cJSON_Delete(root);
	buf_free(&msg);
	buf_free(&body);
	keys_free(&keys);
}

/* The reset sent for a table whose event could not be used. */
static void
check_reset(const char *table, const char *reason, int64_t ts)
{
	struct buf body = { 0 }, msg = { 0 };
	const cJSON *why;
	cJSON *root;
	size_t len = strlen(reason), wlen;

	message_body_reset(&body, table, reason, ts);
	message_frame(&msg, 7, EPOCH, body.data, body.len);
	root = parse_message(&msg);
	if (!json_str_is(cJSON_GetObjectItemCaseSensitive(root, "op"), "reset", 5) ||
	    !json_str_is(cJSON_GetObjectItemCaseSensitive(root, "table"), table,
	    strlen(table)))
		fail("reset message changed", msg.data, msg.len);
	/* The reason, less at most a character cut off at its end. */
	why = cJSON_GetObjectItemCaseSensitive(root, "reason");
	if (!cJSON_IsString(why))
		fail("reset without a reason", msg.data, msg.len);
	wlen = strlen(why->valuestring);
	if (wlen > len || wlen + 3 < len ||
	    memcmp(why->valuestring, reason, wlen) != 0)
		fail("reset reason changed", msg.data, msg.len);
	cJSON_Delete(root);
	buf_free(&msg);
	buf_free(&body);
}

static void
run(const char *payload, size_t len)
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
		check_event(&ev);
		decode_event_free(&ev);
		break;
	case DECODE_TABLE_ONLY:
		if (ev.table == NULL || ev.table[0] == '\0' || err[0] == '\0')
			fail("DECODE_TABLE_ONLY without a table or a reason", NULL, 0);
		check_reset(ev.table, err, ev.ts);
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

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[256];

	if (rules_compile("k:{id}, e:{email}", &rules, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_decode: rules_compile: %s\n", err);
		exit(1);
	}
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	char *exact = malloc(size ? size : 1);

	if (s == NULL || exact == NULL)
		abort();
	/* As a C string: the payload ends at the first NUL. */
	memcpy(s, data, size);
	s[size] = '\0';
	run(s, strlen(s));
	/* As a buffer of exactly size bytes, with no terminator. */
	memcpy(exact, data, size);
	run(exact, size);
	free(exact);
	free(s);
	return 0;
}
