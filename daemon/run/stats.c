/*
 * Statistics. Counters are plain fields; the per-table event counts live
 * in a small open-addressing table whose size is capped, so a flood of
 * made-up table names cannot grow memory without bound. Rendered with
 * the writer of prom.h.
 */
#include "run/stats.h"
#include "lib/prom.h"
#include "lib/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATS_SLOTS (2 * STATS_MAX_TABLES)

static uint32_t
stats_hash(const char *s)
{
	uint32_t h = 2166136261u;

	while (*s != '\0')
		h = (h ^ (unsigned char)*s++) * 16777619u;
	return h;
}

void
stats_count_event(struct stats *s, const char *table)
{
	size_t i;

	if (s->tables == NULL)
		s->tables = xcalloc(STATS_SLOTS, sizeof(*s->tables));
	for (i = stats_hash(table) % STATS_SLOTS; s->tables[i].name != NULL;
	    i = (i + 1) % STATS_SLOTS)
		if (strcmp(s->tables[i].name, table) == 0) {
			s->tables[i].events++;
			return;
		}
	if (s->ntables >= STATS_MAX_TABLES) {
		s->other_events++;
		return;
	}
	s->tables[i].name = xstrdup(table);
	s->tables[i].events = 1;
	s->ntables++;
}

static void stats_render_wal(const struct stats_gauges *g,
    struct buf *out);

void
stats_render(const struct stats *s, const struct stats_gauges *g,
    struct buf *out)
{
	char labels[64];

	prom_head(out, "pginval_info", "gauge",
	    "Version and epoch of this run.");
	buf_adds(out, "pginval_info{version=\"");
	prom_label(out, g->version);
	buf_adds(out, "\",epoch=\"");
	prom_label(out, g->epoch);
	buf_adds(out, "\"} 1\n");

	prom_head(out, "pginval_up", "gauge",
	    "1 when the connection is ready (postgres: LISTEN active).");
	prom_sample(out, "pginval_up", "side=\"postgres\"", g->pg_up);
	prom_sample(out, "pginval_up", "side=\"redis\"", g->redis_up);
	prom_head(out, "pginval_connection_state", "gauge",
	    "The current state of each connection, as a label.");
	buf_adds(out, "pginval_connection_state{side=\"postgres\",state=\"");
	buf_adds(out, g->pg_state);
	buf_adds(out, "\"} 1\npginval_connection_state{side=\"redis\",state=\"");
	buf_adds(out, g->redis_state);
	buf_adds(out, "\"} 1\n");

	prom_counter(out, "pginval_notifications_total",
	    "NOTIFYs received on the channel.", s->notifications);
	prom_counter(out, "pginval_outbox_rows_total",
	    "Rows taken from the outbox (again after a failed delivery).",
	    s->outbox_rows);
	prom_counter(out, "pginval_outbox_oversized_total",
	    "Outbox rows over [outbox] max_payload: not read, delivered as a "
	    "reset of their table.", s->outbox_oversized);
	prom_head(out, "pginval_events_total", "counter",
	    "Row changes and truncates received, per table.");
	for (size_t i = 0; s->tables != NULL && i < STATS_SLOTS; i++) {
		if (s->tables[i].name == NULL)
			continue;
		buf_adds(out, "pginval_events_total{table=\"");
		prom_label(out, s->tables[i].name);
		buf_adds(out, "\"}");
		snprintf(labels, sizeof(labels), " %lu\n", s->tables[i].events);
		buf_adds(out, labels);
	}
	if (s->other_events > 0)
		prom_sample(out, "pginval_events_total",
		    "table=\"(other)\"",
		    (double)s->other_events);
	prom_head(out, "pginval_forged_payloads_total", "counter",
	    "Payloads dropped because they lack the authenticator of "
	    "pginval's triggers, by where they came from.");
	prom_sample(out, "pginval_forged_payloads_total",
	    "source=\"notify\"", (double)s->forged_notify);
	prom_sample(out, "pginval_forged_payloads_total",
	    "source=\"outbox\"", (double)s->forged_outbox);
	prom_sample(out, "pginval_forged_payloads_total",
	    "source=\"wal\"", (double)s->forged_wal);
	prom_head(out, "pginval_decode_errors_total", "counter",
	    "Notifications that could not be used: foreign (not from pginval; "
	    "skipped) or invalid (became a table reset).");
	prom_sample(out, "pginval_decode_errors_total",
	    "kind=\"foreign\"", (double)s->foreign);
	prom_sample(out, "pginval_decode_errors_total",
	    "kind=\"invalid\"", (double)s->invalid);
	prom_counter(out, "pginval_messages_published_total",
	    "Messages acknowledged by Redis.", s->published);
	prom_counter(out, "pginval_keys_published_total",
	    "Keys in messages acknowledged by Redis.", s->keys_published);
	prom_counter(out, "pginval_publish_errors_total",
	    "PUBLISHes that Redis answered with an error.", s->refused);
	prom_counter(out, "pginval_messages_replaced_total",
	    "Messages Redis refused 3 times (too big for it, say), replaced "
	    "by a reset of their table, or of everything.", s->replaced);
	prom_counter(out, "pginval_stream_errors_total",
	    "XADDs to [redis] stream that Redis answered with an error.",
	    s->stream_refused);
	prom_counter(out, "pginval_messages_resent_total",
	    "Messages sent again after the Redis connection dropped.",
	    s->requeued);
	prom_counter(out, "pginval_messages_dropped_total",
	    "Messages dropped because the queue was full (a reset replaced "
	    "them).", s->dropped);
	prom_head(out, "pginval_resets_total", "counter",
	    "Resets queued: for every table, or for one table.");
	prom_sample(out, "pginval_resets_total", "scope=\"all\"",
	    (double)s->resets);
	prom_sample(out, "pginval_resets_total", "scope=\"table\"",
	    (double)s->table_resets);
	prom_counter(out, "pginval_keys_unlinked_total",
	    "Keys removed from Redis (action = delete).", s->unlinked);
	prom_counter(out, "pginval_redis_history_breaks_total",
	    "Times the channel's Redis may have forgotten writes it had "
	    "acknowledged (restarted without its data or from an older "
	    "snapshot, a promoted replica that was behind); with action = "
	    "delete, each queued a reset of every table.", s->history_breaks);
	prom_head(out, "pginval_reconnects_total", "counter",
	    "Successful reconnections after a lost connection.");
	prom_sample(out, "pginval_reconnects_total", "side=\"postgres\"",
	    (double)s->pg_reconnects);
	prom_sample(out, "pginval_reconnects_total", "side=\"redis\"",
	    (double)s->redis_reconnects);
	prom_head(out, "pginval_queue_depth", "gauge",
	    "Messages waiting to be sent to Redis.");
	prom_sample(out, "pginval_queue_depth", NULL, (double)g->queued);
	prom_head(out, "pginval_inflight", "gauge",
	    "Messages sent to Redis and not yet acknowledged.");
	prom_sample(out, "pginval_inflight", NULL, (double)g->inflight);
	if (g->outbox_backlog >= 0) {
		prom_head(out, "pginval_outbox_backlog", "gauge",
		    "Rows waiting in the outbox table at the last drain.");
		prom_sample(out, "pginval_outbox_backlog", NULL,
		    (double)g->outbox_backlog);
	}

	if (g->notify_queue_usage >= 0) {
		prom_head(out, "pginval_notify_queue_usage", "gauge",
		    "The share of PostgreSQL's NOTIFY queue in use (0 to 1), at "
		    "the last health probe; at 1, commits that NOTIFY fail.");
		prom_sample(out, "pginval_notify_queue_usage", NULL,
		    g->notify_queue_usage);
	}

	if (g->wal)
		stats_render_wal(g, out);

	prom_hist(out, "pginval_lag_seconds",
	    "Time from the row change to Redis acknowledging its message.", &s->lag);
}

static void
stats_render_wal(const struct stats_gauges *g, struct buf *out)
{
	prom_head(out, "pginval_wal_up", "gauge",
	    "1 when the WAL stream of the replication slot is active.");
	prom_sample(out, "pginval_wal_up", NULL, g->wal_up);
	prom_counter(out, "pginval_wal_transactions_total",
	    "Transactions received from the WAL stream.", g->wal_transactions);
	prom_counter(out, "pginval_wal_changes_total",
	    "Row changes of watched tables received from the WAL stream.",
	    g->wal_changes);
	prom_counter(out, "pginval_wal_slots_created_total",
	    "Replication slots made because the slot was missing or "
	    "invalidated (each followed by a reset).", g->wal_slots_created);
	prom_head(out, "pginval_wal_confirmed_lag_seconds", "gauge",
	    "Age of the oldest transaction received and not yet confirmed "
	    "to PostgreSQL (0 when all are).");
	prom_sample(out, "pginval_wal_confirmed_lag_seconds", NULL, g->wal_lag);
	if (g->wal_retained >= 0) {
		prom_head(out, "pginval_wal_retained_bytes", "gauge",
		    "WAL that PostgreSQL keeps for the slot, at the last "
		    "health probe.");
		prom_sample(out, "pginval_wal_retained_bytes", NULL,
		    g->wal_retained);
	}
	if (g->wal_unconfirmed >= 0) {
		prom_head(out, "pginval_wal_confirmed_lag_bytes", "gauge",
		    "WAL written since the slot's confirmed position, at the "
		    "last health probe.");
		prom_sample(out, "pginval_wal_confirmed_lag_bytes", NULL,
		    g->wal_unconfirmed);
	}
}

void
stats_free(struct stats *s)
{
	for (size_t i = 0; s->tables != NULL && i < STATS_SLOTS; i++)
		free(s->tables[i].name);
	free(s->tables);
	s->tables = NULL;
	s->ntables = 0;
}
