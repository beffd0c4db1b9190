/*
 * High availability: the daemons of one channel on one database form a
 * group, and exactly one of them, the active one, runs the relay; the
 * others are standbys that keep a connection warm and publish nothing.
 * PostgreSQL is the only coordinator: the active daemon holds a
 * session-level advisory lock,
 *
 *   pg_try_advisory_lock(HA_LOCK_CLASS, hashtext([postgres] channel))
 *
 * on a connection of its own (the lock connection). A lone daemon simply
 * takes it at once: there is nothing to turn on.
 *
 * Fencing: the active daemon pings its lock connection every second; a
 * ping unanswered within takeover_timeout/3, or a lost connection, frees
 * the relay at once (nothing more reaches Redis) and makes it a standby.
 * The server is told to end the lock session when it hears nothing for
 * takeover_timeout (idle_session_timeout, TCP keepalives and
 * tcp_user_timeout), so a partitioned active daemon has gone quiet before
 * its lock is released, and a standby takes over within about
 * takeover_timeout + 1 s. A daemon that dies outright loses its session
 * at once, and a standby takes over within about 1 s.
 *
 * Each takeover starts a new relay, hence a new epoch whose first message
 * has seq 1. In wal mode the new active daemon first ends a walsender
 * that still holds the slot under its own application_name (a fenced
 * daemon's), since only the lock holder may stream it.
 */
#ifndef PGINVAL_HA_H
#define PGINVAL_HA_H

#include <stdbool.h>

#include "lib/buf.h"
#include "core/config.h"

/* The first key of the lock: "pgiv", so that pginval's advisory locks
 * stay apart from an application's. */
#define HA_LOCK_CLASS 1885825398

struct ev_loop;
struct ha;

/* Readiness as the shell wants it: a standby that holds its lock
 * connection is ready, an active daemon when its relay is. Also called
 * at every change of role, so that the status line follows. */
typedef void ha_cb(void *arg, bool ready);

/* Takes ownership of cfg. */
struct ha *ha_new(struct ev_loop *loop, struct config *cfg, ha_cb *cb,
    void *arg);
void ha_start(struct ha *ha);
/* Takes ownership of cfg: the relay's settings when active, and the
 * lock connection's (which reconnects, fencing first, when the
 * conninfo, channel or takeover_timeout changed). */
void ha_reload(struct ha *ha, struct config *cfg);
/* A shutdown: a standby stops at once, an active daemon drains. */
void ha_stop(struct ha *ha);
bool ha_busy(const struct ha *ha);
void ha_free(struct ha *ha);

/* /healthz: the role first ("active; ..." or "standby: ..."). */
bool ha_health(struct ha *ha, struct buf *why);
void ha_status(struct ha *ha, struct buf *out);
/* pginval_active and the role counters, then the relay's when active. */
void ha_metrics(struct ha *ha, struct buf *out);

#endif
