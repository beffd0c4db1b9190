/*
 * The settings of pginval apply, turned into the options of its modules:
 * pure functions of the configuration. What they return points into cfg
 * (and stats), and is valid as long as those are.
 */
#ifndef PGINVAL_APPLY_OPTS_H
#define PGINVAL_APPLY_OPTS_H

#include <stdbool.h>
#include <stddef.h>

#include "apply/apply_stats.h"
#include "apply/apply_target.h"
#include "core/config.h"
#include "lib/pg_conn.h"
#include "lib/redis_conn.h"

/* The channel's Redis: the subscription, the stream and the default
 * target. */
struct redis_conn_opts apply_opts_channel(const struct config *cfg);
/* Target i: the i-th [target] section, or the channel's Redis when there
 * is none (i == 0). The target counts into stats. */
struct apply_target_opts apply_opts_target(const struct config *cfg,
    size_t i, struct apply_stats *stats);
/* Whether any [table] has a refresh query. */
bool apply_opts_refresh_wanted(const struct config *cfg);
/* The PostgreSQL connection of refresh queries: [apply] conninfo, else
 * [postgres]'s. */
struct pg_conn_opts apply_opts_refresh(const struct config *cfg);
/* Whether x and y name the same targets, in the same order. */
bool apply_opts_same_targets(const struct config *x, const struct config *y);

#endif
