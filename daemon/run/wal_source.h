/*
 * Capture from the WAL: a replication connection (replication=database)
 * that streams the channel's publication from a logical slot with the
 * built-in pgoutput plugin, and turns each Insert, Update, Delete and
 * Truncate of a watched table into an event (decode.h), in commit order.
 *
 * Delivery is at least once. Every event comes with an acknowledgement
 * that the owner calls when Redis has taken the message made from it;
 * the position confirmed to the server (the slot's confirmed_flush_lsn)
 * only moves past a transaction whose events are all acknowledged. So a
 * crash, a restart of either server or a lost link costs re-sent
 * messages, never lost ones: the slot keeps the WAL until then.
 *
 * The slot is created when missing, and made again when PostgreSQL has
 * invalidated it (its WAL removed under max_slot_wal_keep_size); the
 * changes in between are unknown, so a reset of every table watched in
 * wal mode is handed up, with the reason.
 */
#ifndef PGINVAL_WAL_SOURCE_H
#define PGINVAL_WAL_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/decode.h"

struct ev_loop;
struct wal_source;

/* What the owner calls, once per item it took, when Redis has
 * acknowledged the message made from it. */
struct wal_ack {
	void (*fn)(void *arg);
	void *arg;
};

enum wal_item_kind {
	WAL_ITEM_EVENT,		/* a row change or a truncate: ev */
	WAL_ITEM_RESET,		/* the table's keys are unknown: table, why */
	/* A payload that pginval's triggers wrote into the WAL (the TRUNCATE
	 * of a partition of a watched root), to be checked and decoded as
	 * a notification is: anyone can write such a message. */
	WAL_ITEM_PAYLOAD,
	WAL_ITEM_BEGIN,		/* a transaction's changes begin to arrive */
	WAL_ITEM_COMMIT,	/* and have all arrived */
	WAL_ITEM_STREAMING,	/* the stream (re)started */
	WAL_ITEM_LOST,		/* the link was lost; a reconnect is scheduled */
};

struct wal_item {
	enum wal_item_kind kind;
	struct event *ev;	/* EVENT; the owner may fill in ts */
	const char *table;	/* RESET: a table; NULL: every wal table */
	const char *why;	/* RESET */
	int64_t ts;		/* RESET: the commit time, or 0 */
	const char *payload;	/* PAYLOAD, not NUL-terminated */
	size_t len;
};

/* Returns true if the owner took ack (EVENT and RESET) and will call it. */
typedef bool wal_source_cb(void *arg, const struct wal_item *it,
    const struct wal_ack *ack);
/* Whether the owner can take no more items now: reading stops until
 * the next acknowledgement finds room. */
typedef bool wal_source_full_cb(void *arg);

struct wal_source_opts {
	const char *conninfo;
	const char *password;	/* may be NULL */
	const char *channel;
	const char *slot;	/* the slot's name */
	double connect_timeout, reconnect_min, reconnect_max;
	/* Status to the server at least this often (with a request for a
	 * reply), and the link counts as dead after twice as long without
	 * a word from the server; 0: every 10 s, no such check. */
	double health_interval;
	/* Counts the messages of pginval's prefix written outside any
	 * transaction, which the triggers never write (may be NULL). */
	unsigned long *forged;
	/* An earlier link of this process streamed from the slot (a relay
	 * before a fence): a missing slot then means a failover. */
	bool streamed_before;
};

struct wal_source *wal_source_new(struct ev_loop *loop,
    const struct wal_source_opts *opts, wal_source_cb *cb,
    wal_source_full_cb *full, void *arg);
void wal_source_start(struct wal_source *ws);
/* Stops reading; acknowledgements still advance the slot while the
 * connection lasts. */
void wal_source_stop(struct wal_source *ws);
/* After the messages holding its acks are gone. */
void wal_source_free(struct wal_source *ws);

bool wal_source_streaming(const struct wal_source *ws);
/* Whether a link of this process ever streamed from the slot. */
bool wal_source_streamed(const struct wal_source *ws);
/* Transactions received and not yet confirmed. */
size_t wal_source_pending(const struct wal_source *ws);
/* The age in seconds of the oldest transaction received and not yet
 * confirmed (0 when none): how far Redis is behind the WAL. */
double wal_source_lag(const struct wal_source *ws);
/* Counters for the metrics. */
struct wal_source_stats {
	unsigned long transactions, changes, truncates, resets, slots_created;
	uint64_t confirmed_lsn;	/* the last position confirmed */
	uint64_t received_lsn;	/* the last position received */
};
const struct wal_source_stats *wal_source_stats(const struct wal_source *ws);

#endif
