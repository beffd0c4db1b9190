/*
 * The WAL source's state, shared by wal_source.c (the stream, and the
 * positions confirmed from it) and wal_slot.c (the session before it:
 * the slot, the publication and the watched columns). Not for other
 * modules: they see only wal_source.h.
 */
#ifndef PGINVAL_WAL_INT_H
#define PGINVAL_WAL_INT_H

#include <ev.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/wal_rel.h"
#include "lib/buf.h"
#include "lib/fifo.h"
#include "lib/pg_conn.h"
#include "run/wal_source.h"

#define WAL_MAX_STALE 64	/* tables for which the map was read again */

enum wal_phase {
	WAL_PHASE_NONE,
	WAL_PHASE_SETUP,	/* settings, slot, publication, columns */
	WAL_PHASE_TAKE,		/* ending our own earlier, silent link */
	WAL_PHASE_DROP,		/* dropping an invalidated slot */
	WAL_PHASE_CREATE,	/* creating the slot */
	WAL_PHASE_START,	/* START_REPLICATION sent */
	WAL_PHASE_STREAMING,
};

struct wal_txn {
	struct fifo_node node;	/* first */
	struct wal_source *ws;
	uint64_t end_lsn;	/* 0: cut by a lost link, confirms nothing */
	int64_t ts;
	ev_tstamp received;	/* when its Begin came */
	unsigned pending;	/* events taken, not yet acknowledged */
	bool committed;
};

struct wal_source {
	struct ev_loop *loop;
	wal_source_cb *cb;
	wal_source_full_cb *full;
	void *arg;
	struct pg_conn *conn;
	char *channel;
	char slot[64];
	double health_interval;
	unsigned long *forged;
	bool stopped;

	enum wal_phase phase;
	int nresult;		/* SETUP: the results read so far */
	char *publication;
	bool slot_missing, slot_lost;
	bool streamed_before;	/* wal_source_opts */
	/* The stream ended because the publication was missing at a change:
	 * dropped since, and maybe made again, which the slot never sees
	 * (it decodes with the catalog as it was then). */
	bool pub_gone;
	bool pub_exists;	/* the publication exists now */
	uint64_t slot_flush;	/* the slot's confirmed_flush_lsn */
	int slot_pid;		/* the backend streaming the slot, or 0 */
	int last_pid;		/* our own last stream's backend */
	struct wal_rels *rels;
	struct buf tables;	/* the wal tables' names, NUL-separated */
	size_t ntables;

	struct fifo txns;	/* received, not yet confirmed */
	struct wal_txn *cur;	/* the open transaction */
	uint64_t flush;		/* confirmed (or to be) */
	uint64_t flush_sent;	/* as last told to the server */
	ev_tstamp status_at, heard_at;
	ev_tstamp streamed_at;	/* when this link began to stream */
	ev_timer status;
	uint32_t stale[WAL_MAX_STALE];
	size_t nstale;
	bool paused;

	struct wal_source_stats stats;
};


/* wal_slot.c: after each connect, the session up to START_REPLICATION,
 * driven by the connection's events. */
void wal_setup(struct wal_source *ws);
void wal_result(struct wal_source *ws, const PGresult *res);
void wal_done(struct wal_source *ws);
/* The server's message in res, for the log. */
const char *wal_res_error(const PGresult *res);

/* wal_source.c */
void wal_fail(struct wal_source *ws, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A reset of every table watched in wal mode, with why. */
void wal_reset_tables(struct wal_source *ws, const char *why);
void wal_tell(struct wal_source *ws, enum wal_item_kind kind);

#endif
