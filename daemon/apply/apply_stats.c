/*
 * /metrics for pginval apply. Names start with pginval_apply_, so that a
 * daemon and an apply process on one host never clash in a dashboard.
 * The hit share of invalidations is keys_existed / keys_deleted.
 */
#include "apply/apply_stats.h"
#include "lib/prom.h"

#include <stdio.h>

/* One sample per target, labelled target="NAME". */
static void
per_target(struct buf *out, const char *name, const struct apply_gauges *g,
    int which)
{
	for (size_t i = 0; i < g->ntargets; i++) {
		const struct apply_target_gauge *t = &g->targets[i];
		char num[64];

		buf_adds(out, name);
		buf_adds(out, "{target=\"");
		prom_label(out, t->name);
		if (which == 3) {
			buf_adds(out, "\",state=\"");
			prom_label(out, t->state);
		}
		snprintf(num, sizeof(num), "\"} %.17g\n", which == 0 ?
		    (double)t->up : which == 1 ? (double)t->queued :
		    which == 2 ? (double)t->inflight : which == 4 ?
		    (double)t->history_breaks : 1.0);
		buf_adds(out, num);
	}
}

void
apply_stats_render(const struct apply_stats *s, const struct apply_gauges *g,
    struct buf *out)
{
	prom_head(out, "pginval_apply_info",
	    "gauge", "Version of pginval apply.");
	buf_adds(out, "pginval_apply_info{version=\"");
	prom_label(out, g->version);
	buf_adds(out, "\"} 1\n");
	prom_head(out, "pginval_apply_channel_up", "gauge",
	    "1 while subscribed to the channel.");
	prom_sample(out, "pginval_apply_channel_up", NULL, g->channel_up);
	prom_head(out, "pginval_apply_target_up", "gauge",
	    "1 while the target Redis is connected and ready.");
	per_target(out, "pginval_apply_target_up", g, 0);
	prom_head(out, "pginval_apply_target_state", "gauge",
	    "The state of each target connection, as a label.");
	per_target(out, "pginval_apply_target_state", g, 3);
	prom_head(out, "pginval_apply_queue_depth", "gauge",
	    "Commands waiting to be sent to each target.");
	per_target(out, "pginval_apply_queue_depth", g, 1);
	prom_head(out, "pginval_apply_inflight", "gauge",
	    "Commands sent to each target and not yet answered.");
	per_target(out, "pginval_apply_inflight", g, 2);
	prom_head(out, "pginval_apply_refresh_pending", "gauge",
	    "Refresh queries waiting for PostgreSQL.");
	prom_sample(out, "pginval_apply_refresh_pending", NULL,
	    (double)g->refresh_pending);

	prom_counter(out, "pginval_apply_messages_total",
	    "Messages received on the channel.", s->messages);
	prom_counter(out, "pginval_apply_invalid_messages_total",
	    "Messages on the channel that were not pginval messages.",
	    s->invalid);
	prom_counter(out, "pginval_apply_keys_deleted_total",
	    "Keys invalidated (UNLINK and marker), counted once per target.",
	    s->keys_deleted);
	prom_counter(out, "pginval_apply_keys_existed_total",
	    "Invalidated keys that were cached (the sum of UNLINK replies); "
	    "divided by keys_deleted, the hit share.", s->keys_existed);
	prom_counter(out, "pginval_apply_keys_swept_total",
	    "Keys removed by reset and truncate sweeps (SCAN + UNLINK).",
	    s->swept);
	prom_counter(out, "pginval_apply_sweeps_total",
	    "Passes of SCAN over a key pattern, counted once per target.",
	    s->sweeps);
	prom_counter(out, "pginval_apply_sweeps_merged_total",
	    "Sweeps asked for while one of the same pattern was under way or "
	    "had just ended: merged into one more pass.", s->sweeps_merged);
	prom_counter(out, "pginval_apply_command_errors_total",
	    "Commands that a target answered with an error.",
	    s->command_errors);
	prom_head(out, "pginval_apply_refreshes_total", "counter",
	    "Refresh queries: stored (SET), missing (no row: deleted) or "
	    "failed (error or timeout: deleted).");
	prom_sample(out, "pginval_apply_refreshes_total",
	    "result=\"stored\"", (double)s->refresh_stored);
	prom_sample(out, "pginval_apply_refreshes_total",
	    "result=\"missing\"", (double)s->refresh_missing);
	prom_sample(out, "pginval_apply_refreshes_total",
	    "result=\"failed\"", (double)s->refresh_failed);
	prom_head(out, "pginval_apply_resets_total", "counter",
	    "Resets carried out: of everything, or of one table.");
	prom_sample(out, "pginval_apply_resets_total", "scope=\"all\"",
	    (double)s->resets_all);
	prom_sample(out, "pginval_apply_resets_total", "scope=\"table\"",
	    (double)s->resets_table);
	prom_head(out, "pginval_apply_gaps_total", "counter",
	    "Missed messages, by the rule that found them; each became a "
	    "replay from [redis] stream, or a reset of everything.");
	prom_sample(out, "pginval_apply_gaps_total", "reason=\"seq\"",
	    (double)s->gaps_seq);
	prom_sample(out, "pginval_apply_gaps_total", "reason=\"epoch\"",
	    (double)s->gaps_epoch);
	prom_sample(out, "pginval_apply_gaps_total",
	    "reason=\"resubscribed\"", (double)s->gaps_resubscribed);
	prom_head(out, "pginval_apply_replays_total", "counter",
	    "Replays of missed messages from [redis] stream, by result "
	    "(failed: a reset of everything instead).");
	prom_sample(out, "pginval_apply_replays_total",
	    "result=\"done\"", (double)s->replays_done);
	prom_sample(out, "pginval_apply_replays_total",
	    "result=\"failed\"", (double)s->replays_failed);
	prom_counter(out, "pginval_apply_replayed_messages_total",
	    "Messages read back from [redis] stream by replays.",
	    s->replayed);
	prom_counter(out, "pginval_apply_repeated_messages_total",
	    "Messages that arrived on the channel after a replay had "
	    "brought them: skipped.", s->repeats);
	prom_head(out, "pginval_apply_repairs_total", "counter",
	    "Targets whose Redis forgot invalidations, by what followed: "
	    "the messages it may have lost replayed to it from [redis] "
	    "stream (done), or a reset of that target (failed).");
	prom_sample(out, "pginval_apply_repairs_total", "result=\"done\"",
	    (double)s->repairs_done);
	prom_sample(out, "pginval_apply_repairs_total", "result=\"failed\"",
	    (double)s->repairs_failed);
	prom_counter(out, "pginval_apply_repaired_messages_total",
	    "Messages replayed from [redis] stream to targets that forgot.",
	    s->repaired);
	prom_counter(out, "pginval_apply_overflows_total",
	    "Target queues that overflowed and were replaced by a reset.",
	    s->overflows);
	prom_head(out, "pginval_redis_history_breaks_total", "counter",
	    "Times a target Redis may have forgotten invalidations it had "
	    "acknowledged (restarted without its data or from an older "
	    "snapshot, a promoted replica that was behind): each repaired "
	    "that target from [redis] stream, or reset it.");
	per_target(out, "pginval_redis_history_breaks_total", g, 4);
	prom_head(out, "pginval_apply_reconnects_total", "counter",
	    "Successful reconnections after a lost connection.");
	prom_sample(out, "pginval_apply_reconnects_total",
	    "side=\"channel\"", (double)s->channel_reconnects);
	prom_sample(out, "pginval_apply_reconnects_total",
	    "side=\"target\"", (double)s->target_reconnects);

	prom_hist(out, "pginval_apply_lag_seconds",
	    "Row change (ts) to the target's acknowledgement of the "
	    "invalidation.", &s->lag);
}
