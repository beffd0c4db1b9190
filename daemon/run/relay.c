/*
 * The relay: policy between the two connections. Every notification ends
 * in exactly one queued message (or is counted and logged as forged or
 * foreign), and
 * every situation in which events may have been missed ends in a reset.
 * See relay.h for the rules.
 */
#include "run/relay_int.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "run/outbox.h"
#include "run/pg_source.h"
#include "run/redis_sink.h"
#include "run/stats.h"
#include "run/wal_source.h"
#include "lib/xalloc.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

/* m is r->change, or a message of its own, which the sink takes. */
static void
relay_hand_over(struct relay *r, struct sink_msg *m)
{
	if (m == &r->change)
		redis_sink_push_change(r->sink, m);
	else
		redis_sink_push(r->sink, m);
}

static void
relay_push(struct relay *r, struct sink_msg *m)
{
	char reason[64];
	size_t dropped;

	if (redis_sink_queued(r->sink) < (size_t)r->cfg->max_queue &&
	    redis_sink_bytes(r->sink) < r->cfg->max_queue_bytes) {
		relay_hand_over(r, m);
		return;
	}
	/* A reset supersedes everything queued before it, so the queue is
	 * replaced by one: memory stays bounded however long Redis is away. */
	dropped = redis_sink_drop_queued(r->sink) + 1;
	r->stats.dropped += dropped;
	if (m != &r->change)
		sink_msg_free(m);
	log_warnx("redis: queue full (%zu messages, %zu bytes); dropped them "
	    "and queued a reset in their place", redis_sink_queued(r->sink),
	    redis_sink_bytes(r->sink));
	snprintf(reason, sizeof(reason), "queue full: %zu messages dropped",
	    dropped);
	redis_sink_push(r->sink, relay_global_reset(r, reason));
}

/* A reset makes the messages still queued before it redundant. */
static void
relay_reset_all(struct relay *r, const char *reason)
{
	size_t dropped = redis_sink_drop_queued(r->sink);

	if (dropped > 0)
		log_info("reset supersedes %zu queued messages", dropped);
	relay_push(r, relay_global_reset(r, reason));
}

/* An outbox row: its message is acknowledged back to the outbox, and is
 * never dropped for room (the batch size bounds how many there are). */
static bool
relay_outbox_row(void *arg, const struct outbox_row *row,
    const struct outbox_ack *ack)
{
	struct relay *r = arg;
	struct sink_msg *m;

	r->stats.outbox_rows++;
	if (row->payload == NULL)
		m = relay_oversized(r, row);
	else
		m = relay_message(r, row->payload, row->len,
		    &r->stats.forged_outbox);
	if (m == NULL)
		return false;
	m->on_ack = ack->fn;
	m->ack_arg = ack->arg;
	relay_hand_over(r, m);
	return true;
}

/* The outbox hands rows over only while Redis takes them and the key to
 * check them is known. */
static void
relay_outbox_gate(struct relay *r)
{
	if (r->outbox != NULL && !r->draining)
		outbox_set_deliverable(r->outbox, pg_source_key(r->pg) != NULL &&
		    redis_sink_state(r->sink) == REDIS_STATE_READY);
}

/*
 * The NOTIFY queue is shared by the whole cluster, and a listener that
 * stops reading (idle in a transaction) holds it back until it fills and
 * writers' commits fail. Said when it crosses notify_queue_warn, again
 * every minute while it stays there, and when it is back under.
 */
static void
relay_queue_usage(struct relay *r)
{
	double u = pg_source_queue_usage(r->pg), warn = r->cfg->pg_notify_queue_warn;
	ev_tstamp now = ev_now(r->loop);

	if (u < warn) {
		if (r->queue_high)
			log_info("postgres: the NOTIFY queue is %.3g%% full, under "
			    "notify_queue_warn again", 100 * u);
		r->queue_high = false;
		return;
	}
	if (r->queue_high && now - r->queue_said < 60)
		return;
	log_warnx("postgres: the NOTIFY queue is %.3g%% full (notify_queue_warn "
	    "is %.3g%%); when it is full, every commit that NOTIFYs fails. A "
	    "session that LISTENs and stays idle in a transaction holds it "
	    "back: find it with SELECT pid, usename, xact_start FROM "
	    "pg_stat_activity WHERE state = 'idle in transaction', and set "
	    "idle_in_transaction_session_timeout", 100 * u, 100 * warn);
	r->queue_high = true;
	r->queue_said = now;
}

/* The WAL stream reads no further while the queue is at its bounds:
 * its changes wait in the slot rather than in memory, and are never
 * dropped for room. */
static bool
relay_wal_full(void *arg)
{
	struct relay *r = arg;

	return redis_sink_queued(r->sink) >= (size_t)r->cfg->max_queue ||
	    redis_sink_bytes(r->sink) >= r->cfg->max_queue_bytes;
}

static void relay_check_ready(struct relay *r);

static bool
relay_wal_item(void *arg, const struct wal_item *it, const struct wal_ack *ack)
{
	struct relay *r = arg;
	struct sink_msg *m;

	switch (it->kind) {
	case WAL_ITEM_BEGIN:
	case WAL_ITEM_COMMIT:
		/* A transaction's changes merge while it arrives. */
		redis_sink_hold(r->sink, it->kind == WAL_ITEM_BEGIN);
		return false;
	case WAL_ITEM_STREAMING:
	case WAL_ITEM_LOST:
		redis_sink_hold(r->sink, false);
		relay_check_ready(r);
		return false;
	case WAL_ITEM_RESET:
		/* Those of a new slot are logged where they are made. */
		if (it->ts != 0)
			relay_complain(r, "a change from the WAL became a reset "
			    "of its table", it->why, it->table, strlen(it->table));
		m = relay_table_reset(r, it->table, it->why, it->ts);
		break;
	case WAL_ITEM_PAYLOAD:
		if ((m = relay_message(r, it->payload, it->len,
		    &r->stats.forged_wal)) == NULL)
			return false;
		break;
	case WAL_ITEM_EVENT:
	default:
		m = relay_event(r, it->ev, NULL, 0);
		break;
	}
	m->on_ack = ack->fn;
	m->ack_arg = ack->arg;
	m->nacks = 0;
	relay_hand_over(r, m);
	return true;
}

/* The WAL stream starts once a table of the channel is in wal mode, and
 * then stays. */
static void
relay_wal_check(struct relay *r)
{
	struct wal_source_opts wo = {
		.conninfo = r->cfg->pg_conninfo,
		.password = r->cfg->pg_password,
		.channel = r->cfg->pg_channel,
		.slot = r->cfg->pg_slot,
		.connect_timeout = r->cfg->pg_connect_timeout,
		.reconnect_min = r->cfg->reconnect_min,
		.reconnect_max = r->cfg->reconnect_max,
		.health_interval = r->cfg->health_interval,
		.forged = &r->stats.forged_wal,
		.streamed_before = r->wal_streamed,
	};

	if (r->wal != NULL || r->draining || !pg_source_wal_tables(r->pg))
		return;
	log_info("wal: tables on channel \"%s\" are in wal mode; streaming "
	    "them from replication slot \"%s\"", r->cfg->pg_channel,
	    r->cfg->pg_slot);
	r->wal = wal_source_new(r->loop, &wo, relay_wal_item, relay_wal_full,
	    r);
	wal_source_start(r->wal);
}

/* Tells the owner when both sides become ready, or stop being so. */
static void
relay_check_ready(struct relay *r)
{
	bool ready = pg_source_state(r->pg) == PG_STATE_LISTENING &&
	    redis_sink_state(r->sink) == REDIS_STATE_READY &&
	    (r->wal == NULL || wal_source_streaming(r->wal));

	if (ready == r->ready)
		return;
	r->ready = ready;
	if (r->cb != NULL)
		r->cb(r->cb_arg, ready ? RELAY_EVENT_READY : RELAY_EVENT_DEGRADED);
}

static void
relay_pg_cb(void *arg, enum pg_event ev, const char *payload, size_t len)
{
	struct relay *r = arg;

	switch (ev) {
	case PG_EVENT_LISTENING:
		/* Changes committed while nobody listened are gone, unless
		 * every table on the channel keeps them in the outbox. */
		if (pg_source_lossy(r->pg))
			relay_reset_all(r, !r->listened ?
			    "start: changes made while no daemon was listening "
			    "are unknown" : "reconnected to PostgreSQL: changes "
			    "may have been missed");
		else
			log_info("postgres: every table on the channel uses the "
			    "outbox or the WAL; nothing was missed");
		if (r->listened)
			r->stats.pg_reconnects++;
		r->listened = true;
		relay_outbox_gate(r);
		relay_wal_check(r);
		break;
	case PG_EVENT_NOTIFY: {
		struct sink_msg *m;

		r->stats.notifications++;
		if ((m = relay_message(r, payload, len,
		    &r->stats.forged_notify)) != NULL)
			relay_push(r, m);
		break;
	}
	case PG_EVENT_WAKE:
		if (r->outbox != NULL)
			outbox_kick(r->outbox);
		else
			relay_complain(r, "outbox wake-up", "[outbox] enabled is "
			    "off, so the changes of durable tables wait in "
			    "pginval.outbox", payload ? payload : "", 0);
		break;
	case PG_EVENT_LOST:
		break;
	case PG_EVENT_QUEUE_USAGE:
		relay_queue_usage(r);
		relay_wal_check(r);
		return;
	}
	if (ev != PG_EVENT_NOTIFY)
		relay_check_ready(r);
}

/*
 * Redis refused m again and again (too big for its proto-max-bulk-len, a
 * key too long to UNLINK): a reset of its table takes its place, and of
 * everything when it was a reset of that table already. Whatever m was
 * to acknowledge, the reset acknowledges. A reset of everything that is
 * refused is dropped: nothing smaller could replace it.
 */
static void
relay_refused(struct relay *r, const struct sink_msg *m, const char *why)
{
	char reason[200];
	struct sink_msg *repl;

	if (m->reset && m->table == NULL) {
		log_error("redis: a reset of every table was refused %d times "
		    "(%s); dropped%s", REDIS_SINK_REFUSALS, why, m->on_ack ?
		    ": its outbox rows are taken again after ack_timeout" :
		    ": subscribers will not see it");
		return;
	}
	snprintf(reason, sizeof(reason), "a message was refused by Redis "
	    "(%.120s)", why);
	if (m->reset || m->table == NULL)
		repl = relay_global_reset(r, reason);
	else
		repl = relay_table_reset(r, m->table, reason, m->ts);
	log_warnx("redis: a message about %s was refused %d times (%s); "
	    "queued a reset of %s%s in its place", m->table ? m->table :
	    "every table", REDIS_SINK_REFUSALS, why, repl->table ? "table " :
	    "every table", repl->table ? repl->table : "");
	repl->on_ack = m->on_ack;
	repl->ack_arg = m->ack_arg;
	repl->nacks = m->nacks;
	relay_hand_over(r, repl);
}

static void
relay_sink_cb(void *arg, enum redis_event ev, const struct sink_msg *m,
    const char *why)
{
	struct relay *r = arg;

	if (ev == REDIS_EVENT_REFUSED)
		relay_refused(r, m, why);
	if (ev == REDIS_EVENT_FORGOT) {
		char reason[200];

		if (r->cfg->redis_action != REDIS_ACTION_DELETE) {
			log_info("redis: it holds no cache data (action = "
			    "publish): nothing to repair");
			return;
		}
		/* Keys it deleted may be back: sweep them all again. */
		snprintf(reason, sizeof(reason), "Redis may have forgotten "
		    "keys it deleted (%.140s)", why ? why : "");
		relay_reset_all(r, reason);
	}
	if (ev == REDIS_EVENT_READY || ev == REDIS_EVENT_LOST) {
		relay_outbox_gate(r);
		relay_check_ready(r);
	}
}

/* How long a PostgreSQL query may go unanswered before the link counts as
 * dead: twice the health interval, so a probe has a full interval. */
static double
relay_query_timeout(const struct config *cfg)
{
	return cfg->health_interval > 0 ? 2 * cfg->health_interval : 0;
}

static struct pg_source *
relay_new_source(struct relay *r)
{
	struct pg_source_opts po = {
		.conninfo = r->cfg->pg_conninfo,
		.password = r->cfg->pg_password,
		.channel = r->cfg->pg_channel,
		.connect_timeout = r->cfg->pg_connect_timeout,
		.reconnect_min = r->cfg->reconnect_min,
		.reconnect_max = r->cfg->reconnect_max,
		.health_interval = r->cfg->health_interval,
		.query_timeout = relay_query_timeout(r->cfg),
		.slot = r->cfg->pg_slot,
	};

	return pg_source_new(r->loop, &po, relay_pg_cb, r);
}

static struct redis_sink_opts
relay_sink_opts(struct relay *r, const struct config *cfg)
{
	struct redis_sink_opts so = {
		.addr = &cfg->redis, .channel = cfg->redis_channel,
		.stream = cfg->redis_stream,
		.stream_maxlen = cfg->redis_stream_maxlen,
		.epoch = r->epoch,
		.delete_keys = cfg->redis_action == REDIS_ACTION_DELETE,
		.max_inflight = cfg->max_inflight,
		.connect_timeout = cfg->redis_connect_timeout,
		.command_timeout = cfg->redis_command_timeout,
		.health_interval = cfg->health_interval,
		.max_keys = cfg->max_keys,
		.coalesce = cfg->coalesce,
		.reconnect_min = cfg->reconnect_min,
		.reconnect_max = cfg->reconnect_max,
		.stats = &r->stats,
	};

	return so;
}

struct relay *
relay_new(struct ev_loop *loop, struct config *cfg, relay_cb *cb, void *arg)
{
	struct relay *r = xcalloc(1, sizeof(*r));
	unsigned char rnd[MESSAGE_EPOCH_LEN / 2];
	struct redis_sink_opts so;

	r->loop = loop;
	r->cfg = cfg;
	r->cb = cb;
	r->cb_arg = arg;
	/* The epoch names this run; it only has to differ between runs. */
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		uint64_t t = (uint64_t)relay_now_us() ^ (uint64_t)getpid() << 40;

		memcpy(rnd, &t, sizeof(t));
		memset(rnd + sizeof(t), 0, sizeof(rnd) - sizeof(t));
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(r->epoch + 2 * i, 3, "%02x", rnd[i]);
	so = relay_sink_opts(r, cfg);
	r->sink = redis_sink_new(loop, &so, relay_sink_cb, r);
	r->pg = relay_new_source(r);
	if (cfg->outbox_enabled) {
		struct outbox_opts oo = {
			.conninfo = cfg->pg_conninfo, .channel = cfg->pg_channel,
			.password = cfg->pg_password,
			.batch = cfg->outbox_batch,
			.max_batch_bytes = cfg->outbox_max_batch_bytes,
			.max_payload = cfg->outbox_max_payload,
			.poll_interval = cfg->outbox_poll_interval,
			.ack_timeout = cfg->outbox_ack_timeout,
			.connect_timeout = cfg->pg_connect_timeout,
			.query_timeout = relay_query_timeout(cfg),
			.reconnect_min = cfg->reconnect_min,
			.reconnect_max = cfg->reconnect_max,
		};

		r->outbox = outbox_new(loop, &oo, relay_outbox_row, r);
	}
	return r;
}

void
relay_start(struct relay *r)
{
	log_info("starting: epoch %s, %zu table rules", r->epoch,
	    r->cfg->ntables);
	redis_sink_start(r->sink);
	pg_source_start(r->pg);
	if (r->outbox != NULL)
		outbox_start(r->outbox);
}

void
relay_reload(struct relay *r, struct config *cfg)
{
	struct config *old = r->cfg;
	bool pg_changed = str_differs(old->pg_conninfo, cfg->pg_conninfo) ||
	    str_differs(old->pg_password, cfg->pg_password) ||
	    str_differs(old->pg_channel, cfg->pg_channel) ||
	    str_differs(old->pg_slot, cfg->pg_slot) ||
	    old->pg_connect_timeout != cfg->pg_connect_timeout;
	struct redis_sink_opts so = relay_sink_opts(r, cfg);

	if (redis_sink_configure(r->sink, &so))
		log_info("reload: Redis settings changed; reconnecting to %s",
		    cfg->redis.where);
	r->cfg = cfg;
	if (pg_changed && !r->draining) {
		log_info("reload: PostgreSQL settings changed; reconnecting");
		pg_source_free(r->pg);
		r->pg = relay_new_source(r);
		pg_source_start(r->pg);
		/* The stream stops reading; its acknowledgements still come,
		 * and the new settings get a stream of their own. */
		if (r->wal_old != NULL && wal_source_pending(r->wal_old) == 0) {
			wal_source_free(r->wal_old);
			r->wal_old = NULL;
		}
		if (r->wal != NULL && r->wal_old == NULL) {
			wal_source_stop(r->wal);
			r->wal_old = r->wal;
			r->wal = NULL;
		}
		relay_check_ready(r);
	}
	config_free(old);
	log_info("reload: configuration applied (%zu table rules)",
	    cfg->ntables);
}

void
relay_stop(struct relay *r)
{
	if (r->draining)
		return;
	r->draining = true;
	pg_source_stop(r->pg);
	if (r->wal != NULL)
		wal_source_stop(r->wal);
	if (r->outbox != NULL)
		outbox_set_deliverable(r->outbox, false);	/* no new batch */
	log_info("shutdown: delivering %zu queued messages (up to %.1fs)",
	    redis_sink_queued(r->sink) + redis_sink_inflight(r->sink),
	    r->cfg->shutdown_timeout);
}

/* Done once Redis has acknowledged everything and the outbox has deleted
 * what was delivered. */
bool
relay_busy(const struct relay *r)
{
	return redis_sink_queued(r->sink) + redis_sink_inflight(r->sink) > 0 ||
	    (r->outbox != NULL && !outbox_idle(r->outbox));
}

void
relay_leaves(const struct relay *r, struct relay_past *out)
{
	out->wal_streamed = r->wal_streamed || (r->wal != NULL &&
	    wal_source_streamed(r->wal)) || (r->wal_old != NULL &&
	    wal_source_streamed(r->wal_old));
	out->outbox_backend = r->outbox != NULL ? outbox_backend(r->outbox) :
	    0;
}

void
relay_follows(struct relay *r, const struct relay_past *p)
{
	r->wal_streamed = p->wal_streamed;
	if (r->outbox != NULL && p->outbox_backend != 0)
		outbox_follows(r->outbox, p->outbox_backend);
}

void
relay_free(struct relay *r)
{
	if (r == NULL)
		return;
	r->cb = NULL;		/* the owner hears nothing from here on */
	if (r->complaints.suppressed > 0)
		log_warnx("postgres: %lu more bad payloads were not logged",
		    r->complaints.suppressed);
	log_info("totals: %lu notifications, %lu changes from the WAL, "
	    "%lu forged, %lu foreign, "
	    "%lu invalid, %lu table resets, %lu resets, %lu dropped by a full "
	    "queue, %lu published, %lu refused, %lu resent, %lu keys unlinked",
	    r->stats.notifications, r->wal ? wal_source_stats(r->wal)->changes :
	    0, r->stats.forged_notify + r->stats.forged_outbox +
	    r->stats.forged_wal, r->stats.foreign, r->stats.invalid,
	    r->stats.table_resets, r->stats.resets, r->stats.dropped,
	    r->stats.published, r->stats.refused, r->stats.requeued,
	    r->stats.unlinked);
	pg_source_free(r->pg);
	/* The sink first: its messages hold the outbox's and the stream's
	 * acks. */
	redis_sink_free(r->sink);
	outbox_free(r->outbox);
	wal_source_free(r->wal);
	wal_source_free(r->wal_old);
	keys_free(&r->change.keys);
	buf_free(&r->change.rows);
	buf_free(&r->change_table);
	stats_free(&r->stats);
	config_free(r->cfg);
	free(r);
}

void
relay_metrics(struct relay *r, struct buf *out)
{
	struct stats_gauges g = {
		.pg_up = pg_source_state(r->pg) == PG_STATE_LISTENING,
		.redis_up = redis_sink_state(r->sink) == REDIS_STATE_READY,
		.pg_state = pg_state_name(pg_source_state(r->pg)),
		.redis_state = redis_state_name(redis_sink_state(r->sink)),
		.queued = redis_sink_queued(r->sink),
		.inflight = redis_sink_inflight(r->sink),
		.outbox_backlog = r->outbox ? outbox_backlog(r->outbox) : -1,
		.notify_queue_usage = pg_source_queue_usage(r->pg),
		.version = PGINVAL_VERSION,
		.epoch = r->epoch,
		.wal = r->wal != NULL,
	};

	if (r->wal != NULL) {
		const struct wal_source_stats *ws = wal_source_stats(r->wal);

		g.wal_up = wal_source_streaming(r->wal);
		g.wal_lag = wal_source_lag(r->wal);
		g.wal_transactions = ws->transactions;
		g.wal_changes = ws->changes + ws->truncates;
		g.wal_slots_created = ws->slots_created;
		pg_source_slot_sizes(r->pg, &g.wal_retained, &g.wal_unconfirmed);
	}
	stats_render(&r->stats, &g, out);
}

bool
relay_health(struct relay *r, struct buf *why)
{
	enum pg_state ps = pg_source_state(r->pg);
	enum redis_state rs = redis_sink_state(r->sink);

	buf_adds(why, "postgres: ");
	buf_adds(why, pg_state_name(ps));
	buf_adds(why, ", redis: ");
	buf_adds(why, redis_state_name(rs));
	if (r->outbox != NULL)
		buf_adds(why, outbox_up(r->outbox) ? ", outbox: connected" :
		    ", outbox: connecting");
	if (r->wal != NULL)
		buf_adds(why, wal_source_streaming(r->wal) ? ", wal: streaming" :
		    ", wal: connecting");
	/* Degraded, not down: restarting pginval would not empty the queue. */
	if (pg_source_queue_usage(r->pg) >= r->cfg->pg_notify_queue_warn) {
		char tmp[160];

		snprintf(tmp, sizeof(tmp), "; degraded: the NOTIFY queue is "
		    "%.3g%% full (notify_queue_warn is %.3g%%)",
		    100 * pg_source_queue_usage(r->pg),
		    100 * r->cfg->pg_notify_queue_warn);
		buf_adds(why, tmp);
	}
	return ps == PG_STATE_LISTENING && rs == REDIS_STATE_READY &&
	    (r->outbox == NULL || outbox_up(r->outbox)) &&
	    (r->wal == NULL || wal_source_streaming(r->wal));
}

void
relay_status(struct relay *r, struct buf *out)
{
	ev_tstamp now = ev_now(r->loop);
	double secs = now - r->status_at;
	unsigned long events = r->stats.notifications + r->stats.outbox_rows +
	    (r->wal ? wal_source_stats(r->wal)->changes : 0);
	char tmp[200];

	relay_health(r, out);
	/* Rates over the time since the previous status line. */
	snprintf(tmp, sizeof(tmp), "; %.0f events/s, %.0f messages/s, "
	    "%lu published, %zu queued, %lu resets",
	    secs > 0 ? (double)(events - r->status_events) / secs : 0,
	    secs > 0 ? (double)(r->stats.published - r->status_published) /
	    secs : 0, r->stats.published, redis_sink_queued(r->sink),
	    r->stats.resets + r->stats.table_resets);
	buf_adds(out, tmp);
	r->status_at = now;
	r->status_events = events;
	r->status_published = r->stats.published;
}

const struct stats *
relay_stats(const struct relay *r)
{
	return &r->stats;
}
