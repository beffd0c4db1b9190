/*
 * The relay wires the pipeline together: notifications from pg_source are
 * decoded, turned into keys by the table rules, encoded and queued on the
 * redis_sink. It owns the policy for what may have been lost: a reset
 * whenever LISTEN (re)starts, a table-wide reset for a change it cannot
 * turn into keys, and a reset in place of a queue that overflowed.
 */
#ifndef PGINVAL_RELAY_H
#define PGINVAL_RELAY_H

#include <stdbool.h>

#include "config.h"

struct ev_loop;
struct relay;

typedef void relay_done_cb(void *arg);

/* Takes ownership of cfg. */
struct relay *relay_new(struct ev_loop *loop, struct config *cfg);
void relay_start(struct relay *r);
/* Takes ownership of cfg; keeps both connections when their settings are
 * unchanged. */
void relay_reload(struct relay *r, struct config *cfg);
/* Stops reading PostgreSQL and calls done once every queued message is
 * acknowledged by Redis, or when shutdown_timeout passes. */
void relay_drain(struct relay *r, relay_done_cb *done, void *arg);
void relay_free(struct relay *r);

#endif
