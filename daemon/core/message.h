/*
 * The message format pginval PUBLISHes (see README, "Messages on the
 * channel"), both ways, and its gap rules:
 *
 *   {"v":1,"seq":1842,"epoch":"6f1c..","op":"update","table":"public.users",
 *    "keys":["user:42"],"ts":1764240000123456,"old":{..},"new":{..}}
 *
 * Writing: a message is built in two parts, the body (from "op" on) and
 * the envelope (v, seq, epoch), added when the message is sent, because
 * only then is its place in the sequence known. Row changes that wait in
 * the queue may merge into one message, so their bodies are encoded from
 * their parts (message_body_rows) when sent.
 *
 * Reading: message_parse() reads what subscribers (pginval apply, its
 * replay, pginval tail) receive, and message_seq_check() keeps their place
 * in the sequence. Pure: no I/O.
 */
#ifndef PGINVAL_MESSAGE_H
#define PGINVAL_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "core/decode.h"
#include "lib/keys.h"

#define MESSAGE_EPOCH_LEN 32	/* hex characters */

/* Appends the body of a message about a change (of one row or several),
 * or a truncate. */
void message_body_event(struct buf *out, const struct event *ev,
    const struct keys *keys);
/* Appends ev's row images as JSON objects, {"old":{..},"new":{..}}, one
 * per row and separated by commas; returns how many. */
size_t message_rows(struct buf *out, const struct event *ev);
/*
 * Appends the body of a message about nrows changes of one table by one
 * op; rows holds their message_rows() objects, separated by commas. One
 * row puts its "old" and "new" at the top level, as message_body_event()
 * does; several put them in a "rows" array, in order.
 */
void message_body_rows(struct buf *out, const char *op, const char *table,
    const struct keys *keys, int64_t ts, const char *rows, size_t rowslen,
    size_t nrows);
/* Appends the body of a reset for table (NULL: every table), with a reason
 * for humans. */
void message_body_reset(struct buf *out, const char *table,
    const char *reason, int64_t ts);
/* Appends the envelope of a message, for its body to follow. */
void message_envelope(struct buf *out, uint64_t seq, const char *epoch);
/* Appends the complete message: envelope, then body. */
void message_frame(struct buf *out, uint64_t seq, const char *epoch,
    const char *body, size_t len);

/* -- reading ------------------------------------------------------------ */

/* A seq outside [1, MESSAGE_SEQ_MAX], or a ts outside [0, MESSAGE_TS_MAX],
 * is refused before it is converted (1e30 and 1e999 would not be). */
#define MESSAGE_SEQ_MAX 9e15	/* below 2^53: every seq up to it is exact */
#define MESSAGE_TS_MAX 9.2e18	/* below INT64_MAX */

struct message_key {
	const char *s;		/* NUL-terminated */
	size_t len;		/* strlen(s) */
};

struct message_col {
	const char *name;	/* NUL-terminated */
	const char *val;	/* NUL-terminated; NULL: the JSON null */
	size_t len;		/* strlen(val) */
};

/* "old" or "new": an object's string and null members, in order. */
struct message_image {
	bool present;		/* the member is an object */
	size_t n;
	const struct message_col *cols;
	size_t first;		/* private */
};

struct message_row {
	struct message_image old, new;
};

/* The buffers of a struct message, kept from one message_parse() to the
 * next. Private. */
struct message_mem {
	char *text;
	size_t text_cap;
	struct message_key *keys;
	size_t keys_cap;
	struct message_col *cols;
	size_t ncols, cols_cap;
	struct message_row *rows;
	size_t rows_cap;
};

/*
 * A message as message_parse() read it. A member that is absent, or not
 * of its type, reads as NULL, 0 or false; of several members of one name,
 * the first counts. Every string lives in the message's own buffers,
 * unescaped, until the next message_parse() into it or message_free(); a
 * string that holds a NUL (\u0000) ends there, as C sees it. "v" is not
 * read: subscribers never checked it.
 */
struct message {
	uint64_t seq;		/* 0 unless a number in [1, MESSAGE_SEQ_MAX];
				 * a fraction is cut off */
	const char *epoch;
	const char *op;
	const char *table;	/* NULL also for null: every table */
	int64_t ts;		/* microseconds; 0 unless has_ts */
	bool has_ts;		/* "ts" is a number in [0, MESSAGE_TS_MAX] */
	const char *reason;
	bool keys_array;	/* "keys" is an array; its strings follow */
	const struct message_key *keys;
	size_t nkeys;
	struct message_image old, new;	/* one row's images, at the top */
	const struct message_row *rows;	/* "rows", when an array: one per */
	size_t nrows;			/* element (a non-object has none) */
	size_t end;		/* bytes read: the JSON value and the blanks
				 * after it; whatever follows is ignored */
	struct message_mem mem;
};

/*
 * Reads text[0..len) into m (zeroed before its first use), never past
 * len. It takes what subscribers have always taken: one JSON value, after
 * a UTF-8 byte order mark and blanks, and whatever follows it is ignored
 * (m->end says where it stopped); a value other than an object is a
 * message without members. Returns -1 when the text is not JSON (err
 * says why and where; m then has no members), else 0. What a subscriber
 * must find in a message, it checks itself.
 */
int message_parse(struct message *m, const char *text, size_t len,
    char *err, size_t errlen) __attribute__((warn_unused_result));
/* Releases m's buffers; m can be used again. */
void message_free(struct message *m);

/*
 * The gap rules of the message contract: a subscriber that keeps its last
 * epoch and seq has missed messages when it sees the same epoch with a seq
 * that is not the last one plus one, or a new epoch whose first message
 * does not have seq 1.
 */
struct message_seq {
	char epoch[64];		/* "" before the first message; a longer
				 * epoch is cut, and never matches again */
	uint64_t last;
};

enum message_gap {
	MESSAGE_GAP_NONE,
	MESSAGE_GAP_SEQ,	/* same epoch, seq is past last + 1 */
	MESSAGE_GAP_REPEAT,	/* same epoch, seq is last or before it */
	MESSAGE_GAP_EPOCH,	/* new epoch, first seq seen is not 1 */
};

/* Whether m has a place in a sequence (an epoch, and a seq in range),
 * which the gap rules need. */
bool message_has_seq(const struct message *m);
/* What (epoch, seq) is to the sequence s follows; nothing is recorded.
 * A first message after message_seq_forget() is never a gap by these
 * rules (the caller treats its own (re)subscription as one). */
enum message_gap message_seq_test(const struct message_seq *s,
    const char *epoch, uint64_t seq);
/* message_seq_test(), then records (epoch, seq) as the last one. */
enum message_gap message_seq_check(struct message_seq *s, const char *epoch,
    uint64_t seq);
void message_seq_forget(struct message_seq *s);

#endif
