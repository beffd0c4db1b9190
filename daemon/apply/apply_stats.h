/*
 * The counters of pginval apply, and their rendering for /metrics in the
 * Prometheus text format. The modules of apply increment fields; the
 * owner passes the gauges it reads from them at render time.
 */
#ifndef PGINVAL_APPLY_STATS_H
#define PGINVAL_APPLY_STATS_H

#include <stddef.h>

#include "lib/buf.h"
#include "lib/hist.h"

struct apply_stats {
	unsigned long messages;		/* messages received on the channel */
	unsigned long invalid;		/* not pginval messages: skipped */
	unsigned long keys_deleted;	/* keys invalidated, per target */
	unsigned long keys_existed;	/* of those, the ones that were cached */
	unsigned long swept;		/* keys removed by reset sweeps */
	unsigned long sweeps;		/* passes of a pattern started */
	unsigned long sweeps_merged;	/* sweeps asked for during another */
	unsigned long command_errors;	/* error replies from targets */
	unsigned long refresh_stored, refresh_missing, refresh_failed;
	unsigned long resets_all, resets_table;
	unsigned long gaps_seq, gaps_epoch, gaps_resubscribed;
	unsigned long replays_done, replays_failed;	/* [redis] stream */
	unsigned long replayed;		/* messages read back from it */
	unsigned long repeats;		/* live ones a replay had brought */
	/* Targets whose Redis forgot: replayed to from the stream, or
	 * reset (failed); messages replayed to them. */
	unsigned long repairs_done, repairs_failed, repaired;
	unsigned long overflows;	/* target queues replaced by a reset */
	unsigned long channel_reconnects, target_reconnects;
	struct hist lag;		/* change to deletion */
};

struct apply_target_gauge {
	const char *name;
	int up;
	const char *state;
	size_t queued, inflight;
	unsigned long history_breaks;	/* its Redis forgot writes */
};

struct apply_gauges {
	const char *version;
	int channel_up;
	size_t refresh_pending;
	const struct apply_target_gauge *targets;
	size_t ntargets;
};

void apply_stats_render(const struct apply_stats *s,
    const struct apply_gauges *g, struct buf *out);

#endif
