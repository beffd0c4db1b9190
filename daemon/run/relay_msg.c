/*
 * The relay's messages: what one payload (a notification or an outbox
 * row) becomes, the change with its keys or a reset of its table, and
 * the resets that the relay queues when events may have been missed. The
 * queueing policy is relay.c's; the state is struct relay (relay_int.h).
 */
#include "run/relay_int.h"
#include "lib/buf.h"
#include "core/decode.h"
#include "lib/log.h"
#include "core/message.h"
#include "run/pg_source.h"
#include "core/rules.h"
#include "core/sign.h"
#include "lib/xalloc.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t
relay_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Rate-limited (log.h); the rest are counted and summarised. */
void
relay_complain(struct relay *r, const char *what, const char *why,
    const char *payload, size_t len)
{
	if (!log_limit(&r->complaints, ev_now(r->loop), "bad payloads"))
		return;
	log_warnx("postgres: %s on channel \"%s\": %s (payload: %.*s%s)", what,
	    r->cfg->pg_channel, why, (int)(len > 120 ? 120 : len), payload,
	    len > 120 ? "..." : "");
}

static void
relay_add_patterns(struct keys *out, const struct table_rule *t)
{
	for (size_t i = 0; i < rules_count(t->rules); i++) {
		char *p = rules_pattern(t->rules, i);

		keys_add(out, p, strlen(p));
		free(p);
	}
}

/* A reset of every table: everything cached may be stale. */
struct sink_msg *
relay_global_reset(struct relay *r, const char *reason)
{
	struct sink_msg *m = sink_msg_new();

	m->ts = relay_now_us();
	m->reset = true;
	message_body_reset(&m->body, NULL, reason, m->ts);
	for (size_t i = 0; i < r->cfg->ntables; i++)
		relay_add_patterns(&m->patterns, &r->cfg->tables[i]);
	r->stats.resets++;
	log_info("queued a reset: %s", reason);
	return m;
}

struct sink_msg *
relay_table_reset(struct relay *r, const char *table, const char *reason,
    int64_t ts)
{
	struct sink_msg *m = sink_msg_new();
	const struct table_rule *t = config_table(r->cfg, table);

	m->ts = ts ? ts : relay_now_us();
	m->reset = true;
	m->table = table ? xstrdup(table) : NULL;
	message_body_reset(&m->body, table, reason, m->ts);
	if (t != NULL)
		relay_add_patterns(&m->patterns, t);
	r->stats.table_resets++;
	return m;
}

/* r->change, emptied, for the row change ev. */
static struct sink_msg *
relay_change(struct relay *r, const struct event *ev)
{
	struct sink_msg *m = &r->change;

	buf_reset(&r->change_table);
	/* With its NUL, so that even "" has data. */
	buf_add(&r->change_table, ev->table, strlen(ev->table) + 1);
	keys_reset(&m->keys);
	buf_reset(&m->rows);
	m->op = event_op_name(ev->op);
	m->table = r->change_table.data;
	m->ts = ev->ts;
	m->on_ack = NULL;
	m->ack_arg = NULL;
	m->nacks = 0;
	return m;
}

/*
 * Turns one event into the message to publish: the change with its keys
 * (r->change), a truncate, or a reset of its table when the keys cannot
 * be known. payload (may be NULL) is what the event was decoded from,
 * for the log.
 */
struct sink_msg *
relay_event(struct relay *r, struct event *ev, const char *payload,
    size_t len)
{
	const struct table_rule *t;
	struct sink_msg *m;
	char err[256];

	if (ev->big)
		return relay_table_reset(r, ev->table, "row too large for NOTIFY",
		    ev->ts);
	if (ev->ts == 0)
		ev->ts = relay_now_us();
	t = config_table(r->cfg, ev->table);
	if (ev->op == EVENT_TRUNCATE) {
		m = sink_msg_new();
		m->ts = ev->ts;
		m->table = xstrdup(ev->table);
		message_body_event(&m->body, ev, NULL);
		if (t != NULL && r->cfg->redis_action == REDIS_ACTION_DELETE)
			relay_add_patterns(&m->patterns, t);
	} else if (m = relay_change(r, ev), t != NULL &&
	    rules_render(t->rules, ev, &m->keys, err, sizeof(err)) == -1) {
		char why[400];

		snprintf(why, sizeof(why), "%s; the table's keys need %s: "
		    "re-run pginval.watch('%s', ARRAY[...]) with them", err,
		    rules_columns(t->rules), ev->table);
		relay_complain(r, "cannot make keys", why, payload ? payload :
		    ev->table, payload ? len : strlen(ev->table));
		return relay_table_reset(r, ev->table, err, ev->ts);
	} else if (r->cfg->redis_rows) {
		/* Encoded when sent: it may merge with later changes. */
		m->nrows = message_rows(&m->rows, ev);
	} else {
		m->nrows = 0;	/* rows = off: keys only, no images built */
	}
	stats_count_event(&r->stats, ev->table);
	return m;
}

/*
 * Turns one payload (a notification, or an outbox row) into the message
 * to publish (relay_event()). Returns NULL for a payload pginval did not
 * send: one without a valid authenticator is dropped, counted in *forged
 * and logged, whatever it says.
 */
struct sink_msg *
relay_message(struct relay *r, const char *payload, size_t len,
    unsigned long *forged)
{
	struct sign_key *key = pg_source_key(r->pg);
	struct event ev;
	struct sink_msg *m = NULL;
	char err[256];

	if (key == NULL || !sign_check(key, payload, len)) {
		(*forged)++;
		relay_complain(r, "dropped a payload", "it does not carry the "
		    "authenticator of pginval's triggers (sent by another role, "
		    "or by triggers older than pginval.sql version 2)", payload,
		    len);
		return NULL;
	}
	switch (decode_event(payload, len, &ev, err, sizeof(err))) {
	case DECODE_JUNK:
		r->stats.foreign++;
		relay_complain(r, "ignored a notification", err, payload, len);
		return NULL;
	case DECODE_TABLE_ONLY:
		r->stats.invalid++;
		relay_complain(r, "bad event", err, payload, len);
		m = relay_table_reset(r, ev.table, err, ev.ts);
		break;
	case DECODE_OK:
		m = relay_event(r, &ev, payload, len);
		break;
	}
	decode_event_free(&ev);
	return m;
}

/* A table name as the triggers write it, with no JSON escape and no
 * control character: safe to log and to name in a reset. */
static bool
relay_plain_name(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f || *s == '\\')
			return false;
	return true;
}

/*
 * An outbox row too big to read: a reset of the table it names, which
 * covers whatever it described, or of everything when no plain table
 * name was found at its start. Whoever wrote it, it is not read.
 */
struct sink_msg *
relay_oversized(struct relay *r, const struct outbox_row *row)
{
	bool named = relay_plain_name(row->table);
	char reason[160];

	r->stats.outbox_oversized++;
	snprintf(reason, sizeof(reason), "an outbox row of %zu bytes, over "
	    "[outbox] max_payload (%zu), was not read", row->len,
	    r->cfg->outbox_max_payload);
	if (log_limit(&r->oversized_lines, ev_now(r->loop),
	    "oversized outbox rows"))
		log_warnx("outbox: %s; queued a reset of %s%.*s instead (raise "
		    "max_payload if such rows are expected)", reason,
		    named ? "table " : "every table", named ? 128 : 0,
		    named ? row->table : "");
	if (named)
		return relay_table_reset(r, row->table, reason, 0);
	return relay_global_reset(r, reason);
}
