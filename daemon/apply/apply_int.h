/*
 * What apply.c (the policy: messages, gaps, replays, resets) and
 * apply_owner.c (reload, shutdown, and what the owner reads: metrics,
 * health, status) share. Not for other modules.
 */
#ifndef PGINVAL_APPLY_INT_H
#define PGINVAL_APPLY_INT_H

#include <ev.h>
#include <stdbool.h>

#include "apply/apply.h"
#include "apply/apply_stats.h"
#include "apply/apply_tables.h"
#include "core/message.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/strs.h"

#define REFRESH_MAX_QUEUE 10000

struct apply_target;

struct apply {
	struct ev_loop *loop;
	struct config *cfg;
	struct apply_sub *sub;
	struct apply_target **targets;
	size_t ntargets;
	struct apply_refresh *refresh;	/* NULL: no table refreshes */
	struct apply_replay *replay;	/* NULL: no [redis] stream */
	struct apply_repair *repair;	/* NULL: no [redis] stream */
	struct apply_tables tables;	/* from cfg */
	struct message_seq seq;
	struct apply_stats stats;
	struct strs values;	/* scratch */
	apply_cb *cb;
	void *cb_arg;
	bool ready;		/* subscribed, and every target connected */
	ev_tstamp status_at;	/* the previous apply_status() */
	unsigned long status_messages, status_keys;
	struct log_limit complaints;	/* about bad messages */
	/* A flood of truncates is merged by the sweeps (redis_sweep.h),
	 * and its lines are limited here. */
	struct log_limit reset_lines;
};

/* Up: subscribed, and every target connected. why (may be NULL) gets
 * each one's state. */
bool apply_up(const struct apply *a, struct buf *why);
/* Sweeps every table's key patterns on t, or flushes it ([apply] reset). */
void apply_reset_target(struct apply *a, struct apply_target *t);
/* Makes a->refresh, from a->cfg. */
void apply_new_refresh(struct apply *a);

#endif
