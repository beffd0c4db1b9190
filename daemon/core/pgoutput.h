/*
 * pgoutput, the logical replication protocol of PostgreSQL's built-in
 * output plugin (protocol version 1), as it arrives in the XLogData
 * messages of a START_REPLICATION ... LOGICAL stream. Parsed in place:
 * strings and values point into the message, which must outlive the
 * parse. Pure: no I/O, no allocation. Every length is checked against the
 * message; anything malformed is refused with a reason.
 */
#ifndef PGINVAL_PGOUTPUT_H
#define PGINVAL_PGOUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Microseconds between 1970-01-01 and 2000-01-01, PostgreSQL's epoch. */
#define PGO_EPOCH_US INT64_C(946684800000000)

/* The tuple data of an Insert, Update or Delete: walked with
 * pgo_tuple_next(). */
struct pgo_tuple {
	bool present;
	uint16_t ncols;
	const unsigned char *p;	/* the first column */
	size_t len;		/* bytes from p to the end of the tuple */
};

/* One column of a tuple. */
struct pgo_datum {
	char kind;		/* 'n' null, 'u' unchanged TOAST, 't' text, 'b' binary */
	const char *val;	/* 't', 'b': not NUL-terminated */
	size_t len;
};

struct pgo_msg {
	char kind;		/* 'B', 'C', 'R', 'I', 'U', 'D', 'T', 'M', or
				 * another (Origin, Type...): nothing else set */
	uint64_t lsn;		/* B: the final LSN; C: the commit LSN; M: its */
	uint64_t end_lsn;	/* C: the end of the commit record */
	int64_t ts;		/* B, C: commit time, µs since the Unix epoch */
	uint32_t xid;		/* B */
	uint32_t relid;		/* R, I, U, D */

	/* R: the relation; its columns are walked with pgo_rel_next(). */
	const char *nspname, *relname;	/* NUL-terminated, in the message */
	char replident;		/* 'd' default, 'n' nothing, 'f' full, 'i' index */
	uint16_t ncols;
	const unsigned char *cols;	/* the first column */
	size_t colslen;

	/* U, D: 'K' (the old replica identity), 'O' (the whole old row) or 0;
	 * I, U: the new row. */
	char old_kind;
	struct pgo_tuple old, new;

	/* T */
	uint32_t nrelids;
	const unsigned char *relids;	/* nrelids big-endian uint32 */
	uint8_t trunc_flags;	/* 1: CASCADE, 2: RESTART IDENTITY */

	/* M: a message of pg_logical_emit_message(). Anyone may send one:
	 * its content is not to be trusted. */
	bool transactional;
	const char *prefix;	/* NUL-terminated, in the message */
	const char *content;	/* not NUL-terminated */
	size_t content_len;
};

/* One column of a Relation message. */
struct pgo_rel_col {
	const char *name;	/* NUL-terminated, in the message */
	uint32_t typid;
	int32_t typmod;
	bool key;		/* part of the replica identity */
};

/*
 * Parses the pgoutput message p[0..len). Returns 0, or -1 with err set
 * (NUL-terminated) when it is malformed: truncated, a count that does not
 * match the bytes, an unknown tuple kind, an unterminated string. Kinds
 * other than those listed in struct pgo_msg are accepted unread.
 */
int pgo_parse(const unsigned char *p, size_t len, struct pgo_msg *m,
    char *err, size_t errlen) __attribute__((warn_unused_result));

/*
 * The next column of a Relation message: *off (a byte offset into m->cols)
 * starts at 0. Returns 1 with *col filled, 0 after the last, -1 when the
 * message is malformed (pgo_parse() has checked it: only a message it did
 * not parse can give -1).
 */
int pgo_rel_next(const struct pgo_msg *m, size_t *off, struct pgo_rel_col *col);

/* The same for the columns of a tuple; *off starts at 0. */
int pgo_tuple_next(const struct pgo_tuple *t, size_t *off,
    struct pgo_datum *d);

/* The i-th relation of a Truncate (i < m->nrelids). */
uint32_t pgo_trunc_relid(const struct pgo_msg *m, uint32_t i);

#endif
