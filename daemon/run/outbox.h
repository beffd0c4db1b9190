/*
 * Durable delivery: drains pginval.outbox, which the triggers of tables in
 * durable or poll mode write in the writer's own transaction. Rows are
 * locked in batches (FOR UPDATE SKIP LOCKED, so two daemons never take the
 * same rows), handed to the owner one by one, and deleted only after Redis
 * has acknowledged every message made from them. A crash anywhere before
 * the delete leaves the rows in place for the next drain: delivery is
 * at least once.
 */
#ifndef PGINVAL_OUTBOX_H
#define PGINVAL_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>

struct ev_loop;
struct outbox;

/* Filled in by the outbox for each row; the owner calls fn(arg) once when
 * the message made from the row is acknowledged by Redis. */
struct outbox_ack {
	void (*fn)(void *arg);
	void *arg;
};

/*
 * One row, borrowed for the length of the callback. A payload over
 * max_payload is not read at all (it could be huge, and anyone may insert
 * into the outbox): only its size, and the table it names, come.
 */
struct outbox_row {
	const char *payload;	/* NULL when over max_payload */
	size_t len;		/* the payload's size in bytes, read or not */
	/* Over max_payload: the "t" member found in the payload's first
	 * 4 kB, as the JSON text has it (escapes included), or NULL. */
	const char *table;
};

/*
 * Returns true if the owner took ack and will call it, false if the row
 * produced no message (it is then done).
 */
typedef bool outbox_row_cb(void *arg, const struct outbox_row *row,
    const struct outbox_ack *ack);

struct outbox_opts {
	const char *conninfo;
	const char *password;	/* may be NULL */
	const char *channel;
	int batch;		/* rows per drain */
	size_t max_batch_bytes;	/* payload bytes per drain (one row at least) */
	size_t max_payload;	/* bigger payloads are not read */
	double poll_interval;	/* drain at least this often */
	double ack_timeout;	/* give a batch back after this long */
	double connect_timeout, query_timeout, reconnect_min, reconnect_max;
};

struct outbox *outbox_new(struct ev_loop *loop, const struct outbox_opts *o,
    outbox_row_cb *cb, void *arg);
void outbox_start(struct outbox *ob);
/* The backend of the outbox's last connection (0: none yet), and, before
 * outbox_start(), that of an outbox before it in this process (a relay
 * before a fence): its session, if still idle in its transaction at the
 * server, is ended at connect so that its rows can be taken at once. */
int outbox_backend(const struct outbox *ob);
void outbox_follows(struct outbox *ob, int backend);
void outbox_stop(struct outbox *ob);
/* Frees the outbox and any batch still waiting for acknowledgements; call
 * it after the messages holding its acks are gone. */
void outbox_free(struct outbox *ob);
/* Drain now (a wake-up NOTIFY, or Redis came back). */
void outbox_kick(struct outbox *ob);
/* Whether messages can be delivered; no batch is taken while they cannot. */
void outbox_set_deliverable(struct outbox *ob, bool yes);
/* Rows waiting at the last count (every 10 s), or -1 before the first. */
long outbox_backlog(const struct outbox *ob);
bool outbox_up(const struct outbox *ob);
/* Nothing taken and not yet deleted. */
bool outbox_idle(const struct outbox *ob);

#endif
