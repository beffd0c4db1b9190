/*
 * Encoding of the messages pginval PUBLISHes (see README, "Messages"):
 *
 *   {"v":1,"seq":1842,"epoch":"6f1c..","op":"update","table":"public.users",
 *    "keys":["user:42"],"ts":1764240000123456,"old":{..},"new":{..}}
 *
 * A message is built in two parts: the body (from "op" on) and the
 * envelope (v, seq, epoch), added when the message is sent, because only
 * then is its place in the sequence known. Row changes that wait in the
 * queue may merge into one message, so their bodies are encoded from
 * their parts (message_body_rows) when sent. Pure.
 */
#ifndef PGINVAL_MESSAGE_H
#define PGINVAL_MESSAGE_H

#include <stdint.h>

#include "buf.h"
#include "decode.h"
#include "rules.h"

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
/* Appends the complete message: envelope, then body. */
void message_frame(struct buf *out, uint64_t seq, const char *epoch,
    const char *body, size_t len);

#endif
