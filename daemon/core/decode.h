/*
 * Decoding of NOTIFY payloads sent by pginval's triggers (sql/pginval.sql):
 *
 *   {"v":1,"t":"public.users","op":"update","ts":1764240000123456,"x":1234,
 *    "o":{"id":"42","email":"a@x.io"},"n":{"id":"42","email":"b@x.io"}}
 *
 * "o" and "n" hold the watched columns' text values (or null); "big":true
 * replaces them when the row did not fit in a NOTIFY. A statement that
 * changed several rows may send them together, as "rows":[{"o":..,"n":..},
 * ...] in place of "o" and "n". Pure: no I/O.
 */
#ifndef PGINVAL_DECODE_H
#define PGINVAL_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum event_op {
	EVENT_INSERT,
	EVENT_UPDATE,
	EVENT_DELETE,
	EVENT_TRUNCATE,
};

struct row_col {
	const char *name;	/* borrowed from the event */
	const char *val;	/* NULL when the SQL value is NULL */
	size_t len;
	char num[32];		/* text of a JSON number value */
};

struct row_image {
	bool present;
	size_t n;
	struct row_col *cols;	/* owned by the event */
};

/* One changed row of a statement that changed several ("rows"). */
struct event_row {
	struct row_image old, new;
};

struct event {
	enum event_op op;
	const char *table;	/* "schema.table"; borrowed from the event */
	int64_t ts;		/* microseconds since the Unix epoch; 0 if absent */
	bool big;		/* the row was too large: the whole table is stale */
	struct row_image old, new;	/* a single row's images */
	/* A payload about several rows ("rows":[{"o":..,"n":..},..]) fills
	 * these instead of old and new. Owned by the event. */
	struct event_row *rows;
	size_t nrows;
	void *json;		/* private: the strings and columns */
};

enum decode_result {
	DECODE_OK,
	/* The payload names a table but is otherwise unusable: everything
	 * cached for that table must be treated as stale. */
	DECODE_TABLE_ONLY,
	/* Not a pginval payload at all. */
	DECODE_JUNK,
};

/*
 * Decodes payload into ev. On DECODE_OK and DECODE_TABLE_ONLY the caller
 * must call decode_event_free(); on DECODE_TABLE_ONLY only ev->table is
 * valid. On anything but DECODE_OK, err says why (NUL-terminated).
 */
enum decode_result decode_event(const char *payload, size_t len,
    struct event *ev, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void decode_event_free(struct event *ev);

/* "insert", "update", "delete" or "truncate". */
const char *event_op_name(enum event_op op);
/*
 * An update whose new image holds the same columns and values as its old
 * one (it left the watched columns alone) gets the old image as its new
 * one, shared. The makers of events call it (decode_event(), wal_rel.h),
 * so that the consumers render such an image once: row_image_shared().
 */
void event_share_images(struct event *ev);
/* Whether b is a's image, shared. */
bool row_image_shared(const struct row_image *a, const struct row_image *b);
/* Returns the column named name in img, or NULL. */
const struct row_col *row_image_get(const struct row_image *img,
    const char *name);

#endif
