/*
 * The relay's state, shared by relay.c (the policy between the two
 * connections) and relay_msg.c (the messages it builds). Not for other
 * modules: they see only relay.h.
 */
#ifndef PGINVAL_RELAY_INT_H
#define PGINVAL_RELAY_INT_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/buf.h"
#include "core/config.h"
#include "lib/log.h"
#include "core/decode.h"
#include "core/message.h"
#include "run/outbox.h"
#include "run/redis_sink.h"
#include "run/relay.h"
#include "run/stats.h"

struct relay {
	struct ev_loop *loop;
	struct config *cfg;
	struct pg_source *pg;
	struct redis_sink *sink;
	struct outbox *outbox;		/* NULL unless [outbox] enabled */
	struct wal_source *wal;		/* NULL until a table is in wal mode */
	struct wal_source *wal_old;	/* replaced by a reload, still acking */
	char epoch[MESSAGE_EPOCH_LEN + 1];
	struct stats stats;
	relay_cb *cb;
	void *cb_arg;
	bool ready;		/* both sides up */
	bool listened;		/* LISTEN was active once */
	bool wal_streamed;	/* relay_follows() */
	/* Every row change is rendered here and handed to the sink, which
	 * merges it or takes its buffers: no message per change. */
	struct sink_msg change;
	struct buf change_table;
	ev_tstamp status_at;	/* the previous relay_status() */
	unsigned long status_events, status_published;

	/* The NOTIFY queue over notify_queue_warn: since when, and when it
	 * was last said. */
	bool queue_high;
	ev_tstamp queue_said;

	/* Complaints about bad payloads, and oversized outbox rows. */
	struct log_limit complaints;
	struct log_limit oversized_lines;

	bool draining;		/* relay_stop() was called */
};

/* Now, in microseconds since the epoch. */
int64_t relay_now_us(void);
/* A bad payload, logged rate-limited (log.h); the rest are counted. */
void relay_complain(struct relay *r, const char *what, const char *why,
    const char *payload, size_t len);
/* A reset of every table: everything cached may be stale. */
struct sink_msg *relay_global_reset(struct relay *r, const char *reason);
/* A reset of table (ts 0: now). */
struct sink_msg *relay_table_reset(struct relay *r, const char *table,
    const char *reason, int64_t ts);
/*
 * Turns one event into the message to publish: the change with its keys
 * (r->change), a truncate, or a reset of its table when the keys cannot
 * be known. payload (may be NULL) is what the event was decoded from,
 * for the log.
 */
struct sink_msg *relay_event(struct relay *r, struct event *ev,
    const char *payload, size_t len);
/*
 * Turns one payload (a notification, or an outbox row) into the message
 * to publish: the change with its keys (r->change), or a reset of its
 * table when the keys cannot be known. Returns NULL for a payload pginval
 * did not send: one without a valid authenticator is dropped, counted in
 * *forged and logged, whatever it says.
 */
struct sink_msg *relay_message(struct relay *r, const char *payload,
    size_t len, unsigned long *forged);
/* An outbox row too big to read: a reset of the table it names, or of
 * everything. */
struct sink_msg *relay_oversized(struct relay *r,
    const struct outbox_row *row);

#endif
