/*
 * pginval apply seen from its owner: reload, shutdown, and what the
 * owner reads (metrics, health, the status line, whether work remains).
 */
#include "apply/apply.h"
#include "apply/apply_int.h"
#include "apply/apply_opts.h"
#include "apply/apply_refresh.h"
#include "apply/apply_repair.h"
#include "apply/apply_replay.h"
#include "apply/apply_sub.h"
#include "apply/apply_target.h"
#include "core/config.h"
#include "lib/redis_conn.h"
#include "lib/xalloc.h"

#include <stdio.h>
#include <stdlib.h>

void
apply_free(struct apply *a)
{
	if (a == NULL)
		return;
	a->cb = NULL;		/* the owner hears nothing from here on */
	apply_sub_free(a->sub);
	a->sub = NULL;
	apply_replay_free(a->replay);
	apply_repair_free(a->repair);
	for (size_t i = 0; i < a->ntargets; i++)
		apply_target_free(a->targets[i]);
	free(a->targets);
	apply_refresh_free(a->refresh);
	apply_tables_free(&a->tables);
	strs_free(&a->values);
	log_info("totals: %lu messages, %lu keys invalidated (%lu were "
	    "cached), %lu resets", a->stats.messages, a->stats.keys_deleted,
	    a->stats.keys_existed, a->stats.resets_all + a->stats.resets_table);
	config_free(a->cfg);
	free(a);
}

void
apply_stop(struct apply *a)
{
	if (a->sub == NULL)
		return;
	apply_sub_free(a->sub);
	a->sub = NULL;
	apply_replay_free(a->replay);	/* what it holds: the next start resets */
	a->replay = NULL;
	apply_repair_free(a->repair);
	a->repair = NULL;
	log_info("shutdown: unsubscribed; delivering the commands in flight "
	    "(up to %.1fs)", a->cfg->shutdown_timeout);
}

void
apply_reload(struct apply *a, struct config *cfg)
{
	struct config *old = a->cfg;

	if (str_differs(old->redis_url, cfg->redis_url) ||
	    str_differs(old->redis.password, cfg->redis.password) ||
	    str_differs(old->redis_channel, cfg->redis_channel) ||
	    str_differs(old->redis_stream, cfg->redis_stream) ||
	    !apply_opts_same_targets(old, cfg) ||
	    str_differs(old->apply_conninfo, cfg->apply_conninfo) ||
	    str_differs(old->pg_conninfo, cfg->pg_conninfo))
		log_warnx("reload: [redis], [target] and connection settings "
		    "take effect at the next start; restart pginval apply");
	a->cfg = cfg;
	/* They point into the configuration: built again from the new one. */
	apply_tables_build(&a->tables, cfg);
	for (size_t i = 0; i < a->ntargets; i++) {
		struct apply_target_opts to = apply_opts_target(a->cfg, i,
		    &a->stats);

		apply_target_tune(a->targets[i], &to);
	}
	if (a->refresh == NULL && apply_opts_refresh_wanted(cfg)) {
		apply_new_refresh(a);
		apply_refresh_start(a->refresh);
	}
	config_free(old);
	log_info("reload: %zu table rules, %zu targets", cfg->ntables,
	    a->ntargets);
}

/* -- the owner's side -------------------------------------------------- */

void
apply_metrics(struct apply *a, struct buf *out)
{
	struct apply_target_gauge *tg = xcalloc(a->ntargets, sizeof(*tg));
	struct apply_gauges g = {
		.version = PGINVAL_VERSION,
		.channel_up = a->sub != NULL && apply_sub_subscribed(a->sub),
		.refresh_pending = a->refresh ?
		    apply_refresh_pending(a->refresh) : 0,
		.targets = tg, .ntargets = a->ntargets,
	};

	for (size_t i = 0; i < a->ntargets; i++) {
		struct apply_target *t = a->targets[i];

		tg[i].name = apply_target_name(t);
		tg[i].up = apply_target_state(t) == REDIS_STATE_READY;
		tg[i].state = redis_state_name(apply_target_state(t));
		tg[i].queued = apply_target_queued(t);
		tg[i].inflight = apply_target_inflight(t);
		tg[i].history_breaks = apply_target_history_breaks(t);
	}
	apply_stats_render(&a->stats, &g, out);
	free(tg);
}

bool
apply_health(struct apply *a, struct buf *why)
{
	return apply_up(a, why);
}

void
apply_status(struct apply *a, struct buf *out)
{
	ev_tstamp now = ev_now(a->loop);
	double secs = now - a->status_at;
	size_t queued = 0;
	char tmp[200];

	apply_up(a, out);
	for (size_t i = 0; i < a->ntargets; i++)
		queued += apply_target_queued(a->targets[i]) +
		    apply_target_inflight(a->targets[i]);
	/* Rates over the time since the previous status line. */
	snprintf(tmp, sizeof(tmp), "; %.0f messages/s, %.0f keys/s, %lu "
	    "messages, %zu queued, %lu resets",
	    secs > 0 ? (double)(a->stats.messages - a->status_messages) / secs :
	    0, secs > 0 ? (double)(a->stats.keys_deleted - a->status_keys) /
	    secs : 0, a->stats.messages, queued,
	    a->stats.resets_all + a->stats.resets_table);
	buf_adds(out, tmp);
	a->status_at = now;
	a->status_messages = a->stats.messages;
	a->status_keys = a->stats.keys_deleted;
}

bool
apply_busy(const struct apply *a)
{
	for (size_t i = 0; i < a->ntargets; i++)
		if (apply_target_busy(a->targets[i]))
			return true;
	return a->refresh != NULL && apply_refresh_pending(a->refresh) > 0;
}

