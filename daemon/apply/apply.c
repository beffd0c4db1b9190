/*
 * pginval apply. The policy between the channel and the targets: every
 * message ends either in invalidations (and refreshes) of its keys on
 * every target, or in a sweep of key patterns, and every way of missing
 * messages (a sequence gap, a new epoch that does not start at 1, our own
 * (re)subscription, a target queue that overflowed) ends in a reset,
 * unless a replay from the stream brings what was missed.
 *
 * A key is refreshed only when apply_table_refreshable() says so (its
 * table's first template, and only that one, produces it); any other key
 * is deleted. The key is always invalidated first, so a refresh that
 * fails leaves it deleted, never stale.
 */
#include "apply/apply.h"
#include "apply/apply_int.h"
#include "lib/strs.h"
#include "apply/apply_opts.h"
#include "apply/apply_refresh.h"
#include "apply/apply_repair.h"
#include "apply/apply_replay.h"
#include "apply/apply_stats.h"
#include "apply/apply_sub.h"
#include "apply/apply_tables.h"
#include "apply/apply_target.h"
#include "lib/buf.h"
#include "core/config.h"
#include "lib/log.h"
#include "core/message.h"
#include "lib/redis_conn.h"
#include "lib/xalloc.h"

#include <ev.h>
#include <stdlib.h>
#include <string.h>

/* -- resets ------------------------------------------------------------- */

void
apply_reset_target(struct apply *a, struct apply_target *t)
{
	if (a->cfg->apply_reset == APPLY_RESET_FLUSH) {
		apply_target_flush(t);
		return;
	}
	for (size_t i = 0; i < a->tables.n; i++)
		for (size_t j = 0; j < a->tables.v[i].n; j++)
			apply_target_sweep(t, a->tables.v[i].patterns[j]);
}

static void
apply_reset_all(struct apply *a, const char *why)
{
	a->stats.resets_all++;
	if (log_limit(&a->reset_lines, ev_now(a->loop), "resets"))
		log_info("reset of every table (%s): %s", why,
		    a->cfg->apply_reset == APPLY_RESET_FLUSH ? "FLUSHDB ASYNC" :
		    "sweeping every table's key patterns");
	for (size_t i = 0; i < a->ntargets; i++)
		apply_reset_target(a, a->targets[i]);
}

static void
apply_sweep_table(const struct apply_table *t, struct apply_target *target)
{
	for (size_t j = 0; j < t->n; j++)
		apply_target_sweep(target, t->patterns[j]);
}

static void
apply_reset_table(struct apply *a, const char *table, const char *why)
{
	const struct apply_table *t = apply_tables_find(&a->tables, table);

	if (t == NULL) {
		if (log_enabled(LOG_LEVEL_DEBUG) &&
		    log_limit(&a->reset_lines, ev_now(a->loop), "resets"))
			log_debug("%s of %s: no [table] section, no keys to "
			    "sweep", why, table);
		return;
	}
	a->stats.resets_table++;
	if (log_limit(&a->reset_lines, ev_now(a->loop), "resets"))
		log_info("%s of %s: sweeping its key patterns", why, table);
	for (size_t i = 0; i < a->ntargets; i++)
		apply_sweep_table(t, a->targets[i]);
}

/* What a message asks of one target, when it is replayed to it alone: a
 * refresh is a deletion there. */
static void
apply_to_target(struct apply *a, struct apply_target *target,
    const struct message *m)
{
	const struct apply_table *t;

	if (m->op == NULL || !m->keys_array) {
		apply_reset_target(a, target);
		return;
	}
	if (strcmp(m->op, "reset") == 0 || strcmp(m->op, "truncate") == 0) {
		if (m->table == NULL)
			apply_reset_target(a, target);
		else if ((t = apply_tables_find(&a->tables, m->table)) != NULL)
			apply_sweep_table(t, target);
		return;
	}
	for (size_t i = 0; i < m->nkeys; i++)
		apply_target_invalidate(target, m->keys[i].s, m->keys[i].len,
		    m->ts);
}

/* -- messages ----------------------------------------------------------- */

/* Rate-limited (log.h); the rest are counted and summarised. */
static void
apply_complain(struct apply *a, const char *why, const char *payload,
    size_t len)
{
	if (log_limit(&a->complaints, ev_now(a->loop), "bad messages"))
		log_warnx("channel: skipping a message: %s (%.*s%s)", why,
		    (int)(len > 120 ? 120 : len), payload, len > 120 ? "..." : "");
}

static void
apply_invalidate(struct apply *a, const char *table, const char *key,
    size_t len, int64_t ts)
{
	const struct apply_table *t = table ?
	    apply_tables_find(&a->tables, table) : NULL;

	for (size_t i = 0; i < a->ntargets; i++)
		apply_target_invalidate(a->targets[i], key, len, ts);
	if (t != NULL && a->refresh != NULL &&
	    apply_table_refreshable(t, key, len, &a->values))
		apply_refresh_push(a->refresh, t->rule->refresh, &a->values, key,
		    len, (long)(t->rule->ttl * 1000), ts);
}

/* Where a message comes from. */
enum apply_from {
	FROM_CHANNEL,
	FROM_STREAM,	/* a replay */
	FROM_HELD,	/* arrived on the channel during a replay */
};

/* What became of a message. */
enum apply_result {
	APPLY_DONE,	/* applied, skipped, or covered by a reset */
	APPLY_GAP,	/* messages before it were missed: replayed first */
};

/*
 * A gap in the channel ends in a replay from the stream when there is
 * one (the message is handled after it), else in a reset that covers the
 * message too. A replayed message that does not follow ends the replay
 * (which then fails). A held message was published after the replay's
 * last entry was added, so a gap before it is one that the stream does
 * not hold: a reset. A repeat, with a stream, is a message that a replay
 * brought already.
 */
static enum apply_result
apply_message(struct apply *a, const char *payload, size_t len,
    enum apply_from from)
{
	/* One per call: a replay that fails at once hands the held messages
	 * to this function again, from within it. */
	struct message m = { 0 };
	enum apply_result res = APPLY_DONE;
	struct message_seq before = a->seq;
	enum message_gap gap;
	char why[160], err[64];

	if (message_parse(&m, payload, len, err, sizeof(err)) == -1) {
		a->stats.invalid++;
		snprintf(why, sizeof(why), "no epoch and seq (%s)", err);
		apply_complain(a, why, payload, len);
		goto done;
	}
	if (!message_has_seq(&m)) {
		a->stats.invalid++;
		apply_complain(a, "no epoch and seq", payload, len);
		goto done;
	}
	gap = message_seq_check(&a->seq, m.epoch, m.seq);
	if (gap == MESSAGE_GAP_REPEAT && a->replay != NULL) {
		a->seq = before;
		a->stats.repeats++;
		goto done;
	}
	if (gap != MESSAGE_GAP_NONE && from == FROM_STREAM) {
		a->seq = before;
		res = APPLY_GAP;
		goto done;
	}
	if (gap != MESSAGE_GAP_NONE) {
		if (gap == MESSAGE_GAP_EPOCH)
			a->stats.gaps_epoch++;
		else
			a->stats.gaps_seq++;
		snprintf(why, sizeof(why), gap == MESSAGE_GAP_EPOCH ?
		    "gap: seq %llu opens epoch %.40s, not 1" :
		    "gap: seq %llu in epoch %.40s does not follow the last one",
		    (unsigned long long)m.seq, m.epoch);
		if (a->replay != NULL && from == FROM_CHANNEL) {
			log_info("%s; replaying the missed messages", why);
			a->seq = before;
			apply_replay_from(a->replay, before.epoch, before.last);
			res = APPLY_GAP;
			goto done;
		}
		log_warnx("%s; messages were missed%s", why, from == FROM_HELD ?
		    ", and the stream does not hold them" : "");
		apply_reset_all(a, why);
		goto done;
	}
	if (a->repair != NULL) {
		uint64_t mark = apply_repair_mark(a->repair, m.epoch, m.seq);

		for (size_t i = 0; i < a->ntargets && mark != 0; i++)
			apply_target_mark(a->targets[i], mark);
	}
	if (m.op == NULL || !m.keys_array) {
		a->stats.invalid++;
		apply_complain(a, "no op or keys", payload, len);
		apply_reset_all(a, "a message could not be understood");
		goto done;
	}
	if (strcmp(m.op, "reset") == 0 || strcmp(m.op, "truncate") == 0) {
		snprintf(why, sizeof(why), "%s%s%.100s", m.op,
		    m.reason ? ": " : "", m.reason ? m.reason : "");
		if (m.table == NULL)
			apply_reset_all(a, why);
		else
			apply_reset_table(a, m.table, why);
		goto done;
	}
	for (size_t i = 0; i < m.nkeys; i++)
		apply_invalidate(a, m.table, m.keys[i].s, m.keys[i].len, m.ts);
done:
	message_free(&m);
	return res;
}

/* -- readiness ---------------------------------------------------------- */

/* Up: subscribed, and every target connected. why (may be NULL) gets
 * each one's state. */
bool
apply_up(const struct apply *a, struct buf *why)
{
	bool up = a->sub != NULL && apply_sub_subscribed(a->sub);

	if (why != NULL) {
		buf_adds(why, "channel: ");
		buf_adds(why, a->sub ? apply_sub_state_name(a->sub) : "closed");
	}
	for (size_t i = 0; i < a->ntargets; i++) {
		enum redis_state st = apply_target_state(a->targets[i]);

		up = up && st == REDIS_STATE_READY;
		if (why == NULL)
			continue;
		buf_adds(why, i == 0 ? ", targets: " : ", ");
		buf_adds(why, apply_target_name(a->targets[i]));
		buf_addc(why, ' ');
		buf_adds(why, redis_state_name(st));
	}
	return up;
}

/* Tells the owner when apply becomes ready, or stops being so. */
static void
apply_check_ready(struct apply *a)
{
	bool ready = apply_up(a, NULL);

	if (ready == a->ready)
		return;
	a->ready = ready;
	if (a->cb != NULL)
		a->cb(a->cb_arg, ready ? APPLY_EVENT_READY : APPLY_EVENT_DEGRADED);
}

/* -- replays ------------------------------------------------------------ */

/* Hands the messages held during a replay to apply_message(). */
static void
apply_drain_held(struct apply *a)
{
	const char *p;
	size_t len;

	while ((p = apply_replay_held(a->replay, &len)) != NULL) {
		apply_message(a, p, len, FROM_HELD);
		apply_replay_pop(a->replay);
	}
}

/* A reset covers whatever the replay would have brought. */
static void
apply_replay_failed(struct apply *a, const char *why)
{
	a->stats.replays_failed++;
	log_warnx("replay: %s; resetting instead", why);
	message_seq_forget(&a->seq);
	apply_reset_all(a, "missed messages could not be replayed");
}

static bool
apply_replay_event(void *arg, enum apply_replay_event ev,
    const char *payload, size_t len)
{
	struct apply *a = arg;

	switch (ev) {
	case REPLAY_EVENT_ENTRY:
		a->stats.replayed++;
		return apply_message(a, payload, len, FROM_STREAM) == APPLY_DONE;
	case REPLAY_EVENT_DONE:
		a->stats.replays_done++;
		log_info("replay: caught up with the stream after %zu "
		    "message%s", len, len == 1 ? "" : "s");
		apply_drain_held(a);
		break;
	case REPLAY_EVENT_FAILED:
		/* The held messages follow the reset, the first one
		 * starting the sequence again. */
		apply_replay_failed(a, payload);
		apply_drain_held(a);
		break;
	}
	return true;
}

/* A live message waits while a replay runs. */
static void
apply_live(struct apply *a, const char *payload, size_t len)
{
	bool held = a->replay != NULL && apply_replay_running(a->replay);

	a->stats.messages++;
	if (!held && apply_message(a, payload, len, FROM_CHANNEL) != APPLY_GAP)
		return;
	if (!apply_replay_hold(a->replay, payload, len)) {
		/* The reset covers them all; this one starts again. */
		apply_replay_cancel(a->replay);
		apply_replay_failed(a, "too many messages arrived during it");
		apply_message(a, payload, len, FROM_CHANNEL);
	}
}

/* Targets (or refreshes) with more than half their room queued. */
static bool
apply_replay_busy(void *arg)
{
	struct apply *a = arg;

	for (size_t i = 0; i < a->ntargets; i++)
		if (apply_target_queued(a->targets[i]) >
		    (size_t)a->cfg->apply_max_queue / 2)
			return true;
	return a->refresh != NULL &&
	    apply_refresh_pending(a->refresh) > REFRESH_MAX_QUEUE / 2;
}

static void
apply_sub_event(void *arg, enum apply_sub_event ev, const char *payload,
    size_t len)
{
	struct apply *a = arg;

	switch (ev) {
	case SUB_EVENT_SUBSCRIBED:
		/* Pub/sub kept nothing while we were away. */
		a->stats.channel_reconnects = apply_sub_reconnects(a->sub);
		if (a->stats.channel_reconnects == 0) {
			message_seq_forget(&a->seq);
			apply_reset_all(a, "start: changes made while apply was "
			    "not subscribed are unknown");
			break;
		}
		a->stats.gaps_resubscribed++;
		if (a->replay != NULL && a->seq.epoch[0] != '\0') {
			log_info("resubscribed: replaying the messages sent "
			    "meanwhile");
			apply_replay_from(a->replay, a->seq.epoch, a->seq.last);
			break;
		}
		message_seq_forget(&a->seq);
		apply_reset_all(a, "resubscribed: messages sent meanwhile were "
		    "missed");
		break;
	case SUB_EVENT_MESSAGE:
		apply_live(a, payload, len);
		return;
	case SUB_EVENT_LOST:
		break;
	}
	apply_check_ready(a);
}

static void
apply_refresh_event(void *arg, enum apply_refresh_result res,
    const char *key, size_t klen, const char *value, size_t vlen,
    long ttl_ms, int64_t ts)
{
	struct apply *a = arg;

	if (res == REFRESH_VALUE) {
		a->stats.refresh_stored++;
		for (size_t i = 0; i < a->ntargets; i++)
			apply_target_set(a->targets[i], key, klen, value, vlen,
			    ttl_ms, ts);
		return;
	}
	/* No row, or no answer: the key stays deleted (again, in case an
	 * older refresh stored something meanwhile). */
	if (res == REFRESH_MISSING)
		a->stats.refresh_missing++;
	else
		a->stats.refresh_failed++;
	for (size_t i = 0; i < a->ntargets; i++)
		apply_target_invalidate(a->targets[i], key, klen, ts);
}

/* -- targets that forgot ------------------------------------------------ */

static void
apply_repair_event(void *arg, struct apply_target *t,
    enum apply_repair_event ev, const struct message *m, const char *why)
{
	struct apply *a = arg;

	switch (ev) {
	case REPAIR_ENTRY:
		a->stats.repaired++;
		apply_to_target(a, t, m);
		break;
	case REPAIR_DONE:
		a->stats.repairs_done++;
		log_info("target %s: repaired: every message it may have "
		    "forgotten was replayed to it", apply_target_name(t));
		break;
	case REPAIR_FAILED:
		a->stats.repairs_failed++;
		log_warnx("target %s: the repair from the stream failed: %s; "
		    "resetting it", apply_target_name(t), why);
		apply_reset_target(a, t);
		break;
	}
}

/* The messages it may have lost are replayed to it, else it is reset. */
static void
apply_forgot(struct apply *a, struct apply_target *t)
{
	struct redis_conn_opts chan = apply_opts_channel(a->cfg);
	char why[200];

	if (a->repair == NULL) {
		snprintf(why, sizeof(why), "no [redis] stream to replay from");
	} else if (apply_repair_target(a->repair) == t) {
		apply_repair_cancel(a->repair, t);
		snprintf(why, sizeof(why), "it forgot again while repaired");
	} else if (apply_repair_start(a->repair, t, apply_target_forgot_mark(t),
	    &a->seq, &chan, why, sizeof(why))) {
		return;
	}
	a->stats.repairs_failed++;
	log_warnx("target %s: its Redis may have forgotten invalidations; "
	    "resetting it (%s)", apply_target_name(t), why);
	apply_reset_target(a, t);
}

static void
apply_target_event(void *arg, struct apply_target *t,
    enum apply_target_event ev)
{
	struct apply *a = arg;

	if (ev == TARGET_EVENT_OVERFLOW) {
		log_warnx("target %s: queue overflowed; resetting it",
		    apply_target_name(t));
		apply_reset_target(a, t);
		return;
	}
	if (ev == TARGET_EVENT_FORGOT) {
		apply_forgot(a, t);
		return;
	}
	apply_check_ready(a);
}

/* -- construction ------------------------------------------------------- */

void
apply_new_refresh(struct apply *a)
{
	struct pg_conn_opts po = apply_opts_refresh(a->cfg);

	a->refresh = apply_refresh_new(a->loop, &po, REFRESH_MAX_QUEUE,
	    apply_refresh_event, a);
}

struct apply *
apply_new(struct ev_loop *loop, struct config *cfg, apply_cb *cb, void *arg)
{
	struct apply *a = xcalloc(1, sizeof(*a));
	struct redis_conn_opts chan = apply_opts_channel(cfg);

	a->loop = loop;
	a->cfg = cfg;
	a->cb = cb;
	a->cb_arg = arg;
	log_info("apply: channel \"%s\" on %s, %zu target%s, %zu table rules",
	    cfg->redis_channel, cfg->redis.where,
	    cfg->ntargets > 0 ? cfg->ntargets : 1,
	    cfg->ntargets == 1 || cfg->ntargets == 0 ? "" : "s", cfg->ntables);
	apply_tables_build(&a->tables, cfg);
	a->ntargets = cfg->ntargets > 0 ? cfg->ntargets : 1;
	a->targets = xcalloc(a->ntargets, sizeof(*a->targets));
	for (size_t i = 0; i < a->ntargets; i++) {
		struct apply_target_opts to = apply_opts_target(a->cfg, i,
		    &a->stats);

		a->targets[i] = apply_target_new(a->loop, &to, apply_target_event,
		    a);
	}
	if (apply_opts_refresh_wanted(cfg))
		apply_new_refresh(a);
	if (cfg->redis_stream != NULL) {
		a->replay = apply_replay_new(a->loop, &chan, cfg->redis_stream,
		    apply_replay_busy, apply_replay_event, a);
		a->repair = apply_repair_new(a->loop, cfg->redis_stream,
		    apply_replay_busy, apply_repair_event, a);
	}
	a->sub = apply_sub_new(a->loop, &chan, cfg->redis_channel,
	    apply_sub_event, a);
	return a;
}

void
apply_start(struct apply *a)
{
	for (size_t i = 0; i < a->ntargets; i++)
		apply_target_start(a->targets[i]);
	if (a->refresh != NULL)
		apply_refresh_start(a->refresh);
	if (a->replay != NULL)
		apply_replay_start(a->replay);
	apply_sub_start(a->sub);
}
