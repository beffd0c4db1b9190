/*
 * Statistics. Counters are plain fields; the per-table event counts live
 * in a small open-addressing table whose size is capped, so a flood of
 * made-up table names cannot grow memory without bound. The Prometheus
 * text helpers are exported: apply_stats renders with them too.
 */
#include "stats.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATS_SLOTS (2 * STATS_MAX_TABLES)

const double stats_lag_bounds[STATS_LAG_BUCKETS] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1, 2.5, 5, 10,
};

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

void
stats_observe_lag(struct stats *s, double seconds)
{
	size_t i;

	if (seconds < 0)
		seconds = 0;
	for (i = 0; i < STATS_LAG_BUCKETS; i++)
		if (seconds <= stats_lag_bounds[i]) {
			s->lag_buckets[i]++;
			break;
		}
	s->lag_count++;
	s->lag_sum += seconds;
}

void
stats_prom_head(struct buf *out, const char *name, const char *type,
    const char *help)
{
	buf_adds(out, "# HELP ");
	buf_adds(out, name);
	buf_addc(out, ' ');
	buf_adds(out, help);
	buf_adds(out, "\n# TYPE ");
	buf_adds(out, name);
	buf_addc(out, ' ');
	buf_adds(out, type);
	buf_addc(out, '\n');
}

void
stats_prom_label(struct buf *out, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\' || *v == '"')
			buf_addc(out, '\\');
		if (*v == '\n')
			buf_adds(out, "\\n");
		else
			buf_addc(out, *v);
	}
}

void
stats_prom_sample(struct buf *out, const char *name, const char *labels,
    double v)
{
	char num[64];

	buf_adds(out, name);
	if (labels != NULL && labels[0] != '\0') {
		buf_addc(out, '{');
		buf_adds(out, labels);
		buf_addc(out, '}');
	}
	snprintf(num, sizeof(num), " %.17g\n", v);
	buf_adds(out, num);
}

void
stats_prom_counter(struct buf *out, const char *name, const char *help,
    unsigned long v)
{
	stats_prom_head(out, name, "counter", help);
	stats_prom_sample(out, name, NULL, (double)v);
}

void
stats_prom_lag(struct buf *out, const char *name, const char *help,
    const struct stats *s)
{
	unsigned long cum = 0;
	char series[128], le[64];

	stats_prom_head(out, name, "histogram", help);
	snprintf(series, sizeof(series), "%s_bucket", name);
	for (size_t i = 0; i < STATS_LAG_BUCKETS; i++) {
		cum += s->lag_buckets[i];
		snprintf(le, sizeof(le), "le=\"%g\"", stats_lag_bounds[i]);
		stats_prom_sample(out, series, le, (double)cum);
	}
	stats_prom_sample(out, series, "le=\"+Inf\"", (double)s->lag_count);
	snprintf(series, sizeof(series), "%s_sum", name);
	stats_prom_sample(out, series, NULL, s->lag_sum);
	snprintf(series, sizeof(series), "%s_count", name);
	stats_prom_sample(out, series, NULL, (double)s->lag_count);
}

void
stats_render(const struct stats *s, const struct stats_gauges *g,
    struct buf *out)
{
	char labels[64];

	stats_prom_head(out, "pginval_info", "gauge",
	    "Version and epoch of this run.");
	buf_adds(out, "pginval_info{version=\"");
	stats_prom_label(out, g->version);
	buf_adds(out, "\",epoch=\"");
	stats_prom_label(out, g->epoch);
	buf_adds(out, "\"} 1\n");

	stats_prom_head(out, "pginval_up", "gauge",
	    "1 when the connection is ready (postgres: LISTEN active).");
	stats_prom_sample(out, "pginval_up", "side=\"postgres\"", g->pg_up);
	stats_prom_sample(out, "pginval_up", "side=\"redis\"", g->redis_up);
	stats_prom_head(out, "pginval_connection_state", "gauge",
	    "The current state of each connection, as a label.");
	buf_adds(out, "pginval_connection_state{side=\"postgres\",state=\"");
	buf_adds(out, g->pg_state);
	buf_adds(out, "\"} 1\npginval_connection_state{side=\"redis\",state=\"");
	buf_adds(out, g->redis_state);
	buf_adds(out, "\"} 1\n");

	stats_prom_counter(out, "pginval_notifications_total",
	    "NOTIFYs received on the channel.", s->notifications);
	stats_prom_counter(out, "pginval_outbox_rows_total",
	    "Rows taken from the outbox (again after a failed delivery).",
	    s->outbox_rows);
	stats_prom_counter(out, "pginval_outbox_oversized_total",
	    "Outbox rows over [outbox] max_payload: not read, delivered as a "
	    "reset of their table.", s->outbox_oversized);
	stats_prom_head(out, "pginval_events_total", "counter",
	    "Row changes and truncates received, per table.");
	for (size_t i = 0; s->tables != NULL && i < STATS_SLOTS; i++) {
		if (s->tables[i].name == NULL)
			continue;
		buf_adds(out, "pginval_events_total{table=\"");
		stats_prom_label(out, s->tables[i].name);
		buf_adds(out, "\"}");
		snprintf(labels, sizeof(labels), " %lu\n", s->tables[i].events);
		buf_adds(out, labels);
	}
	if (s->other_events > 0)
		stats_prom_sample(out, "pginval_events_total",
		    "table=\"(other)\"",
		    (double)s->other_events);
	stats_prom_head(out, "pginval_forged_payloads_total", "counter",
	    "Payloads dropped because they lack the authenticator of "
	    "pginval's triggers, by where they came from.");
	stats_prom_sample(out, "pginval_forged_payloads_total",
	    "source=\"notify\"", (double)s->forged_notify);
	stats_prom_sample(out, "pginval_forged_payloads_total",
	    "source=\"outbox\"", (double)s->forged_outbox);
	stats_prom_head(out, "pginval_decode_errors_total", "counter",
	    "Notifications that could not be used: foreign (not from pginval; "
	    "skipped) or invalid (became a table reset).");
	stats_prom_sample(out, "pginval_decode_errors_total",
	    "kind=\"foreign\"", (double)s->foreign);
	stats_prom_sample(out, "pginval_decode_errors_total",
	    "kind=\"invalid\"", (double)s->invalid);
	stats_prom_counter(out, "pginval_messages_published_total",
	    "Messages acknowledged by Redis.", s->published);
	stats_prom_counter(out, "pginval_keys_published_total",
	    "Keys in messages acknowledged by Redis.", s->keys_published);
	stats_prom_counter(out, "pginval_publish_errors_total",
	    "PUBLISHes that Redis answered with an error.", s->refused);
	stats_prom_counter(out, "pginval_messages_replaced_total",
	    "Messages Redis refused 3 times (too big for it, say), replaced "
	    "by a reset of their table, or of everything.", s->replaced);
	stats_prom_counter(out, "pginval_stream_errors_total",
	    "XADDs to [redis] stream that Redis answered with an error.",
	    s->stream_refused);
	stats_prom_counter(out, "pginval_messages_resent_total",
	    "Messages sent again after the Redis connection dropped.",
	    s->requeued);
	stats_prom_counter(out, "pginval_messages_dropped_total",
	    "Messages dropped because the queue was full (a reset replaced "
	    "them).", s->dropped);
	stats_prom_head(out, "pginval_resets_total", "counter",
	    "Resets queued: for every table, or for one table.");
	stats_prom_sample(out, "pginval_resets_total", "scope=\"all\"",
	    (double)s->resets);
	stats_prom_sample(out, "pginval_resets_total", "scope=\"table\"",
	    (double)s->table_resets);
	stats_prom_counter(out, "pginval_keys_unlinked_total",
	    "Keys removed from Redis (action = delete).", s->unlinked);
	stats_prom_head(out, "pginval_reconnects_total", "counter",
	    "Successful reconnections after a lost connection.");
	stats_prom_sample(out, "pginval_reconnects_total", "side=\"postgres\"",
	    (double)s->pg_reconnects);
	stats_prom_sample(out, "pginval_reconnects_total", "side=\"redis\"",
	    (double)s->redis_reconnects);
	stats_prom_head(out, "pginval_queue_depth", "gauge",
	    "Messages waiting to be sent to Redis.");
	stats_prom_sample(out, "pginval_queue_depth", NULL, (double)g->queued);
	stats_prom_head(out, "pginval_inflight", "gauge",
	    "Messages sent to Redis and not yet acknowledged.");
	stats_prom_sample(out, "pginval_inflight", NULL, (double)g->inflight);
	if (g->outbox_backlog >= 0) {
		stats_prom_head(out, "pginval_outbox_backlog", "gauge",
		    "Rows waiting in the outbox table at the last drain.");
		stats_prom_sample(out, "pginval_outbox_backlog", NULL,
		    (double)g->outbox_backlog);
	}

	if (g->notify_queue_usage >= 0) {
		stats_prom_head(out, "pginval_notify_queue_usage", "gauge",
		    "The share of PostgreSQL's NOTIFY queue in use (0 to 1), at "
		    "the last health probe; at 1, commits that NOTIFY fail.");
		stats_prom_sample(out, "pginval_notify_queue_usage", NULL,
		    g->notify_queue_usage);
	}

	stats_prom_lag(out, "pginval_lag_seconds",
	    "Time from the row change to Redis acknowledging its message.", s);
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
