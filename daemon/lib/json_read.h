/*
 * A one-pass reader of JSON text, the only one in pginval, for parsers
 * made for one format (the triggers' payloads, in decode.c; the channel's
 * messages, in message.c): the caller walks the structure it expects
 * with json_next_member() and json_value(), and skips the rest. It reads
 * JSON as cJSON, the library it replaced, did (the same blanks, numbers,
 * escapes and nesting limit), so that a payload or a message means what
 * it meant before. Values are checked and skipped without recursion.
 * Pure: no I/O, no allocation.
 */
#ifndef PGINVAL_JSON_READ_H
#define PGINVAL_JSON_READ_H

#include <stdbool.h>
#include <stddef.h>

#define JSON_MAX_DEPTH 1000	/* open arrays and objects, as cJSON had */

/* A value as read; of an array or an object, only its type. */
struct json_val {
	enum { JSON_NONE, JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER,
	    JSON_STRING, JSON_ARRAY, JSON_OBJECT } type;	/* NONE: absent */
	const char *s;		/* STRING: NUL-terminated, in the text */
	size_t len;		/* up to its first NUL, as C sees it */
	double d;		/* NUMBER */
};

/*
 * The reader's state. Strings are unescaped (and long numbers copied) into
 * text, which needs as many bytes as the input has plus one: unescaped, a
 * string never takes more than it did between its quotes, plus its NUL.
 */
struct json_reader {
	const unsigned char *p, *end;	/* what is left to read */
	char *text;		/* the next free byte of the text */
	bool nul;		/* a string held a NUL, raw or escaped */
	size_t depth;		/* arrays and objects open */
};

/* The next byte, or -1 at the end. */
int json_peek(const struct json_reader *rd);
/* Every byte up to the space is a blank, NUL included, as to cJSON. */
void json_skip_blanks(struct json_reader *rd);
/* Past the [ or { at rd->p; false when that nests too deep. */
bool json_open(struct json_reader *rd);
/*
 * Steps to the next member of the array or object being read (opened by
 * json_open()), which ends with close: returns 1 at the member's value
 * (its name in *key, in an object), 0 past the end, -1 on bad syntax.
 */
int json_next_member(struct json_reader *rd, int close,
    struct json_val *key);
/* Reads a scalar into v, or checks and skips an array or an object (v
 * then has only its type). Returns -1 on bad syntax. */
int json_value(struct json_reader *rd, struct json_val *v);
/* Checks and skips any value. Returns -1 on bad syntax. */
int json_skip_value(struct json_reader *rd);

#endif
