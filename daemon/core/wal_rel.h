/*
 * The relations of a pgoutput stream (pgoutput.h) and the tables of the
 * channel that are watched in wal mode: turns Insert, Update and Delete
 * messages into the events that the trigger modes decode (decode.h),
 * carrying the watched columns with the same text. pgoutput sends each
 * value's text output, while the triggers send the text of to_jsonb():
 * the two differ for booleans and timestamps, which are rewritten (timetz
 * keeps its text output in to_jsonb()); the types whose text could differ
 * in other ways (json, arrays, composites, types with a cast to json,
 * float4 and float8, whose 1e+100 and -0 to_jsonb() writes as digits and
 * 0) are refused by watch() and, should one appear later, make the
 * table's keys unknown. The texts are the same only when the session that
 * decodes (the walsender) has DateStyle ISO and the TimeZone of the
 * writers' sessions.
 * Pure: no I/O.
 */
#ifndef PGINVAL_WAL_REL_H
#define PGINVAL_WAL_REL_H

#include <stddef.h>
#include <stdint.h>

#include "core/decode.h"
#include "core/pgoutput.h"

/* How a watched column's text output becomes the triggers' text. */
enum wal_class {
	WAL_CLASS_TEXT,		/* the same text */
	WAL_CLASS_BOOL,		/* t, f: true, false */
	WAL_CLASS_TIMESTAMP,	/* "2024-01-02 03:04:05": "2024-01-02T03:04:05" */
	WAL_CLASS_TIMESTAMPTZ,	/* and "+01": "+01:00" */
	WAL_CLASS_TIMETZ,	/* the same text: "03:04:05+01" */
	WAL_CLASS_UNSUPPORTED,	/* the key cannot be known from the WAL */
};

struct wal_rels;

struct wal_rels *wal_rels_new(void);
void wal_rels_free(struct wal_rels *rels);
/* Forgets the watched tables and the relations: before a new stream, which
 * describes its relations again, and the map is read again. */
void wal_rels_clear(struct wal_rels *rels);

/* "text", "bool", "timestamp", "timestamptz", "timetz"; anything else
 * (NULL included) is WAL_CLASS_UNSUPPORTED. */
enum wal_class wal_class_parse(const char *s);

/* One watched column, as pginval.wal_columns() lists them: table relid
 * watches col, of type typid, whose text is rendered as cls. Called in the
 * order of watch()'s columns. */
void wal_rels_watch(struct wal_rels *rels, uint32_t relid, const char *col,
    uint32_t typid, enum wal_class cls);

/* A Relation message (m->kind 'R'): remembers the relation, replacing what
 * was known of relid. Returns -1 with err set when its columns are
 * malformed. */
int wal_rels_relation(struct wal_rels *rels, const struct pgo_msg *m,
    char *err, size_t errlen);

/* relid's name, "schema.table" as the triggers spell it, from its last
 * Relation message; NULL if none came. */
const char *wal_rels_table(const struct wal_rels *rels, uint32_t relid);
/* Whether relid is among the watched tables. */
int wal_rels_watched(const struct wal_rels *rels, uint32_t relid);

enum wal_event_result {
	WAL_EVENT_OK,		/* ev is filled */
	/* relid is not among the watched tables, or one of its watched
	 * columns now has another type than the map says: the map is older
	 * than the stream (watch() was called since), read it again. */
	WAL_EVENT_STALE,
	/* A watched value cannot be known (why says which and why): an
	 * unchanged TOASTed value with no old image, an old image without the
	 * column (the replica identity does not cover it), a type of
	 * WAL_CLASS_UNSUPPORTED. The table's keys must be reset. */
	WAL_EVENT_UNKNOWN,
	/* Malformed: no Relation came for relid, or the tuple does not
	 * match it. why says what. */
	WAL_EVENT_BAD,
};

/*
 * An Insert, Update or Delete (m->kind 'I', 'U', 'D') as an event: op,
 * the table's name, ts, and the old and new images of the watched columns
 * (in watch()'s order; a watched column the relation no longer has is
 * left out, as the triggers do). An Update that sent no old image changed
 * no column of the replica identity: its old image is the new one, when
 * the identity covers every watched column. The values are copies,
 * NUL-terminated. The event and its strings belong to rels until the next
 * call; do not decode_event_free() it.
 */
enum wal_event_result wal_rels_event(struct wal_rels *rels,
    const struct pgo_msg *m, int64_t ts, struct event *ev, char *why,
    size_t whylen);

#endif
