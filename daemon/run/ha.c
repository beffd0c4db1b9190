/*
 * The group of a channel (ha.h): the lock connection, and the relay while
 * this daemon is the active one.
 *
 *   DOWN --connected, session set up--> STANDBY --lock taken--> TAKING
 *        --a stale slot consumer ended--> ACTIVE (relay_new, relay_start)
 *   ACTIVE --ping unanswered, error, lost--> fenced: relay_free, DOWN
 *
 * Every transition goes through ha_set_state(), which logs it with its
 * reason and tells the shell, so that STATUS= and /healthz follow.
 */
#include "run/ha.h"
#include "lib/log.h"
#include "lib/pg_conn.h"
#include "lib/prom.h"
#include "lib/xalloc.h"
#include "run/relay.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Seconds between lock tries and pings: at most a fifth of
 * takeover_timeout, so that a cut-off active daemon fences itself (within
 * an interval and a third of it) well before the server, which waits for
 * takeover_timeout after the last ping it heard, releases the lock. */
#define HA_INTERVAL(t) ((t) / 5 < 1.0 ? (t) / 5 : 1.0)
/* The lock connection's connect timeout, when [postgres] connect_timeout
 * is longer: a tenth of takeover_timeout, at least a second. */
#define HA_CONNECT(t) ((t) / 10 > 1.0 ? (t) / 10 : 1.0)
#define HA_STR2(x) #x
#define HA_STR(x) HA_STR2(x)

enum ha_state {
	HA_DOWN,	/* no lock connection: connecting, or backing off */
	HA_STANDBY,	/* connected; another daemon holds the lock */
	HA_TAKING,	/* the lock is ours; ending a stale slot consumer */
	HA_ACTIVE,	/* the relay runs */
	HA_STOPPED,	/* shut down as a standby */
};

static const char *const ha_state_names[] = {
	"down", "standby", "taking over", "active", "stopped",
};

enum ha_query {
	HA_Q_NONE,
	HA_Q_SETUP,	/* session settings */
	HA_Q_TRY,	/* pg_try_advisory_lock, and who holds it */
	HA_Q_TAKE,	/* end a walsender still on the slot */
	HA_Q_END,	/* end our previous lock session, gone silent */
	HA_Q_PING,	/* SELECT 1: the session, hence the lock, lives */
};

struct ha {
	struct ev_loop *loop;
	struct config *cfg;	/* owned; the relay holds a reference */
	ha_cb *cb;
	void *arg;
	struct pg_conn *conn;	/* the lock connection */
	struct relay *relay;	/* only while ACTIVE */
	enum ha_state state;
	enum ha_query query;	/* in progress on conn */
	bool failed;		/* the query in progress returned an error */
	bool locked;		/* the last try took the lock */
	bool relay_ready;
	bool stopping;
	int holder;		/* the lock holder's backend; 0: unknown */
	int last_pid;		/* the backend of our current lock session */
	struct relay_past past;	/* what our last relay left */
	int prev_pid;		/* and of the one before */
	/* When each began (pg_stat_activity.backend_start, as text): a
	 * backend number alone may have been reused by another session. */
	char last_start[64], prev_start[64];
	unsigned long takeovers, fences;
	ev_timer tick;
};

static void
ha_notify(struct ha *ha)
{
	ha->cb(ha->arg, ha->state == HA_STANDBY ||
	    (ha->state == HA_ACTIVE && ha->relay_ready));
}

static void
ha_set_state(struct ha *ha, enum ha_state s, const char *why)
{
	if (ha->state == s)
		return;
	log_info("ha: %s -> %s: %s", ha_state_names[ha->state],
	    ha_state_names[s], why);
	ha->state = s;
	ha_notify(ha);
}

/* Stops publishing at once: the relay goes without draining, so nothing
 * more reaches Redis from this daemon. Its outbox batch rolls back and
 * its slot position stays unconfirmed: the next active daemon sends them. */
static void
ha_fence(struct ha *ha, const char *why)
{
	if (ha->relay == NULL)
		return;
	ha->fences++;
	relay_leaves(ha->relay, &ha->past);
	log_warnx("ha: fenced: %s; stopped publishing at once (what Redis has "
	    "not acknowledged is left to the next active daemon)", why);
	relay_free(ha->relay);
	ha->relay = NULL;
	ha->relay_ready = false;
}

static void
ha_relay_cb(void *arg, enum relay_event ev)
{
	struct ha *ha = arg;

	ha->relay_ready = ev == RELAY_EVENT_READY;
	ha_notify(ha);
}

static void
ha_send(struct ha *ha, enum ha_query q, const char *sql, int n,
    const char *const *params)
{
	ha->query = q;
	ha->failed = false;
	if (pg_conn_query(ha->conn, sql, n, params) == -1)
		ha->query = HA_Q_NONE;
}

/*
 * The server ends the lock session when it hears nothing for
 * takeover_timeout: idle_session_timeout (PostgreSQL 14) catches a
 * partition behind a proxy or NAT whose TCP still answers; keepalives and
 * tcp_user_timeout catch a dead peer. Pings come at least every second,
 * so only a daemon that cannot reach the server is ended.
 */
static void
ha_setup(struct ha *ha)
{
	double t = ha->cfg->takeover_timeout;
	int idle = t / 2 >= 1 ? (int)(t / 2) : 1;
	int intvl = t / 10 >= 1 ? (int)(t / 10) : 1;
	char sql[400], ist[64] = "";

	ha->prev_pid = ha->last_pid;
	ha->last_pid = PQbackendPID(pg_conn_pq(ha->conn));
	memcpy(ha->prev_start, ha->last_start, sizeof(ha->prev_start));
	ha->last_start[0] = '\0';
	if (PQserverVersion(pg_conn_pq(ha->conn)) >= 140000)
		snprintf(ist, sizeof(ist), "SET idle_session_timeout = %d; ",
		    (int)(t * 1000));
	else
		log_warnx("ha: PostgreSQL before 14 has no idle_session_timeout: "
		    "an active daemon cut off behind a proxy or NAT keeps its "
		    "lock until TCP keepalives end its session");
	snprintf(sql, sizeof(sql), PG_CONN_PIN_PATH "%sSET tcp_keepalives_idle "
	    "= %d; SET tcp_keepalives_interval = %d; SET tcp_keepalives_count "
	    "= %d; SET tcp_user_timeout = %d; SELECT backend_start::text FROM "
	    "pg_catalog.pg_stat_activity WHERE pid = pg_catalog.pg_backend_pid()",
	    ist, idle, intvl,
	    (int)(t / 2 / intvl) > 0 ? (int)(t / 2 / intvl) : 1,
	    (int)(t * 1000));
	ha_send(ha, HA_Q_SETUP, sql, 0, NULL);
}

static void
ha_try(struct ha *ha)
{
	const char *p[] = { ha->cfg->pg_channel };

	ha_send(ha, HA_Q_TRY, "SELECT pg_try_advisory_lock("
	    HA_STR(HA_LOCK_CLASS) ", hashtext($1)), (SELECT min(pid) "
	    "FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
	    "objsubid = 2 AND classid = " HA_STR(HA_LOCK_CLASS)
	    " AND objid::int8 = hashtext($1)::int8 & 4294967295 AND "
	    "database = (SELECT oid FROM pg_database WHERE datname = "
	    "current_database()))", 1, p);
}

/* Only the lock holder may stream the slot: a walsender still on it under
 * our application_name (the same conninfo's) is a fenced daemon's, cut
 * off, which would hold it until wal_sender_timeout. Another program's
 * (pg_recvlogical) is left alone: the stream waits for it. */
static void
ha_take(struct ha *ha)
{
	const char *p[] = { ha->cfg->pg_slot, NULL };
	char ms[16];

	snprintf(ms, sizeof(ms), "%d", (int)(ha->cfg->takeover_timeout * 500));
	p[1] = ms;
	pg_conn_set_query_timeout(ha->conn, ha->cfg->takeover_timeout);
	ha_send(ha, HA_Q_TAKE, "SELECT s.active_pid, pg_terminate_backend("
	    "s.active_pid, $2::int8) FROM pg_replication_slots s JOIN "
	    "pg_stat_activity a ON a.pid = s.active_pid WHERE s.slot_name = $1 "
	    "AND a.application_name = current_setting('application_name')",
	    2, p);
}

/* Our previous lock session outlives a link that went silent (no FIN
 * came), and holds the lock until the server ends it: we fenced already,
 * so it is ended now rather than waited for. */
static void
ha_end_previous(struct ha *ha)
{
	char pid[16], ms[16];
	const char *p[] = { pid, ms, ha->prev_start };

	log_warnx("ha: the lock is still held by our previous lock session "
	    "(backend %d), which went silent; ending it", ha->holder);
	snprintf(pid, sizeof(pid), "%d", ha->holder);
	snprintf(ms, sizeof(ms), "%d", (int)(ha->cfg->takeover_timeout * 250));
	ha->prev_pid = 0;
	ha_send(ha, HA_Q_END, "SELECT pg_terminate_backend(pid, $2::int8) "
	    "FROM pg_stat_activity WHERE pid = $1::int AND "
	    "backend_start::text = $3", 3, p);
}

static void
ha_activate(struct ha *ha)
{
	char why[96];

	pg_conn_set_query_timeout(ha->conn, ha->cfg->takeover_timeout / 3);
	ha->takeovers++;
	ha->holder = 0;
	ha->relay = relay_new(ha->loop, config_ref(ha->cfg), ha_relay_cb, ha);
	relay_follows(ha->relay, &ha->past);
	snprintf(why, sizeof(why), "took the lock of channel \"%.40s\" (a new "
	    "epoch)", ha->cfg->pg_channel);
	ha_set_state(ha, HA_ACTIVE, why);
	relay_start(ha->relay);
}

static void
ha_result(struct ha *ha, const PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);
	char msg[256];

	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

		snprintf(msg, sizeof(msg), "%s", m ? m : PQresStatus(st));
		if (ha->query == HA_Q_END)
			log_warnx("ha: cannot end our previous lock session: %s; "
			    "waiting for the server to end it", msg);
		else if (ha->query == HA_Q_TAKE)
			log_warnx("ha: cannot end the walsender still on "
			    "replication slot \"%s\": %s; the stream starts when "
			    "it is gone (fix: grant pg_signal_backend, or use the "
			    "same role on every daemon)", ha->cfg->pg_slot, msg);
		else
			log_warnx("ha: lock connection: %s", msg);
		ha->failed = true;
		return;
	}
	if (ha->query == HA_Q_SETUP && PQntuples(res) == 1 &&
	    PQnfields(res) == 1) {
		snprintf(ha->last_start, sizeof(ha->last_start), "%s",
		    PQgetvalue(res, 0, 0));
	} else if (ha->query == HA_Q_TRY && PQntuples(res) == 1) {
		ha->locked = PQgetvalue(res, 0, 0)[0] == 't';
		ha->holder = PQgetisnull(res, 0, 1) ? 0 :
		    atoi(PQgetvalue(res, 0, 1));
	} else if (ha->query == HA_Q_TAKE) {
		for (int i = 0; i < PQntuples(res); i++)
			log_warnx("ha: replication slot \"%s\" was still streamed "
			    "by backend %s, a fenced daemon's: %s", ha->cfg->pg_slot,
			    PQgetvalue(res, i, 0), PQgetvalue(res, i, 1)[0] == 't' ?
			    "ended it" : "it did not end in time");
	}
}

static void
ha_done(struct ha *ha)
{
	enum ha_query q = ha->query;
	char why[96];

	ha->query = HA_Q_NONE;
	/* Ending another session may be refused; the lock session is
	 * still sound then. */
	if (ha->failed && q != HA_Q_TAKE && q != HA_Q_END) {
		pg_conn_fail(ha->conn, "a query on the lock connection failed");
		return;
	}
	switch (q) {
	case HA_Q_SETUP:
		if (!ha->stopping)
			ha_try(ha);
		break;
	case HA_Q_TRY:
		if (ha->stopping)
			break;
		if (ha->locked) {
			ha_set_state(ha, HA_TAKING, "took the lock");
			ha_take(ha);
			break;
		}
		if (ha->holder != 0 && ha->holder == ha->prev_pid &&
		    ha->prev_start[0] != '\0') {
			ha_end_previous(ha);
			break;
		}
		snprintf(why, sizeof(why), "the lock is held by backend %d",
		    ha->holder);
		ha_set_state(ha, HA_STANDBY, why);
		break;
	case HA_Q_TAKE:
		ha_activate(ha);
		break;
	case HA_Q_END:
		if (!ha->stopping)
			ha_try(ha);
		break;
	default:
		break;
	}
}

static void
ha_conn_cb(void *arg, enum pg_conn_event ev, const PGresult *res,
    const PGnotify *n)
{
	struct ha *ha = arg;

	(void)n;
	switch (ev) {
	case PG_CONN_EVENT_UP:
		pg_conn_set_query_timeout(ha->conn,
		    ha->cfg->takeover_timeout / 3);
		ha_setup(ha);
		break;
	case PG_CONN_EVENT_RESULT:
		ha_result(ha, res);
		break;
	case PG_CONN_EVENT_DONE:
		ha_done(ha);
		break;
	case PG_CONN_EVENT_DOWN:
		ha->query = HA_Q_NONE;
		ha_fence(ha, "the lock connection was lost or did not answer");
		ha_set_state(ha, ha->stopping ? HA_STOPPED : HA_DOWN,
		    "the lock connection was lost; reconnecting");
		break;
	default:
		break;
	}
}

static void
ha_tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ha *ha = w->data;

	(void)loop;
	(void)revents;
	if (!pg_conn_ready(ha->conn) || ha->query != HA_Q_NONE)
		return;
	if (ha->state == HA_ACTIVE)
		ha_send(ha, HA_Q_PING, "SELECT 1", 0, NULL);
	else if (ha->state == HA_STANDBY && !ha->stopping)
		ha_try(ha);
}

static void
ha_tick_set(struct ha *ha)
{
	double i = HA_INTERVAL(ha->cfg->takeover_timeout);

	ev_timer_stop(ha->loop, &ha->tick);
	ev_timer_set(&ha->tick, i, i);
	ev_timer_start(ha->loop, &ha->tick);
}

static struct pg_conn *
ha_new_conn(struct ha *ha)
{
	double t = ha->cfg->takeover_timeout;
	struct pg_conn_opts o = {
		.name = "lock",
		.conninfo = ha->cfg->pg_conninfo,
		.password = ha->cfg->pg_password,
		/* A cut-off daemon's attempts hang until this; once the
		 * link is back it should not wait long to rejoin. */
		.connect_timeout = ha->cfg->pg_connect_timeout < HA_CONNECT(t) ?
		    ha->cfg->pg_connect_timeout : HA_CONNECT(t),
		.query_timeout = t / 3,
		.reconnect_min = ha->cfg->reconnect_min,
		.reconnect_max = ha->cfg->reconnect_max,
		/* The client gives up on a silent server well before the
		 * server gives up on the client. */
		.keepalives_idle = t / 5 >= 1 ? (int)(t / 5) : 1,
		.keepalives_interval = 1,
		.keepalives_count = 3,
		.user_timeout_ms = (int)(t * 1000 / 3),
	};

	return pg_conn_new(ha->loop, &o, ha_conn_cb, ha);
}

struct ha *
ha_new(struct ev_loop *loop, struct config *cfg, ha_cb *cb, void *arg)
{
	struct ha *ha = xcalloc(1, sizeof(*ha));

	ha->loop = loop;
	ha->cfg = cfg;
	ha->cb = cb;
	ha->arg = arg;
	ha->conn = ha_new_conn(ha);
	ev_timer_init(&ha->tick, ha_tick_cb, 0, 0);
	ha->tick.data = ha;
	return ha;
}

void
ha_start(struct ha *ha)
{
	log_info("ha: joining the group of channel \"%s\" (lock %d, "
	    "hashtext('%s'); takeover_timeout %.1fs)", ha->cfg->pg_channel,
	    HA_LOCK_CLASS, ha->cfg->pg_channel, ha->cfg->takeover_timeout);
	pg_conn_start(ha->conn);
	ha_tick_set(ha);
}

void
ha_reload(struct ha *ha, struct config *cfg)
{
	struct config *old = ha->cfg;
	bool lock_changed = str_differs(old->pg_conninfo, cfg->pg_conninfo) ||
	    str_differs(old->pg_password, cfg->pg_password) ||
	    str_differs(old->pg_channel, cfg->pg_channel) ||
	    old->takeover_timeout != cfg->takeover_timeout;

	ha->cfg = cfg;
	if (lock_changed && !ha->stopping) {
		log_info("reload: the lock connection's settings changed; "
		    "reconnecting it (and taking the lock again)");
		ha_fence(ha, "the lock connection is being replaced");
		pg_conn_free(ha->conn);
		ha->conn = ha_new_conn(ha);
		ha->query = HA_Q_NONE;
		ha_set_state(ha, HA_DOWN, "reload");
		pg_conn_start(ha->conn);
		ha_tick_set(ha);
	} else if (ha->relay != NULL) {
		relay_reload(ha->relay, config_ref(cfg));
	}
	config_free(old);
}

void
ha_stop(struct ha *ha)
{
	ha->stopping = true;
	if (ha->relay != NULL) {
		relay_stop(ha->relay);
		return;
	}
	/* A standby has nothing in flight: it leaves the group at once. */
	ev_timer_stop(ha->loop, &ha->tick);
	pg_conn_stop(ha->conn);
	ha->query = HA_Q_NONE;
	ha_set_state(ha, HA_STOPPED, "shutting down");
}

bool
ha_busy(const struct ha *ha)
{
	return ha->relay != NULL && relay_busy(ha->relay);
}

void
ha_free(struct ha *ha)
{
	if (ha == NULL)
		return;
	log_info("ha: %lu takeovers, %lu fences", ha->takeovers, ha->fences);
	ev_timer_stop(ha->loop, &ha->tick);
	relay_free(ha->relay);
	pg_conn_free(ha->conn);
	config_free(ha->cfg);
	free(ha);
}

bool
ha_health(struct ha *ha, struct buf *why)
{
	char tmp[160];

	switch (ha->state) {
	case HA_ACTIVE:
		buf_adds(why, "active; ");
		return relay_health(ha->relay, why);
	case HA_STANDBY:
		snprintf(tmp, sizeof(tmp), "standby: the lock of channel "
		    "\"%.40s\" is held by backend %d", ha->cfg->pg_channel,
		    ha->holder);
		buf_adds(why, tmp);
		return true;
	case HA_TAKING:
		buf_adds(why, "standby: taking over");
		return false;
	case HA_STOPPED:
		buf_adds(why, "standby: stopped");
		return false;
	case HA_DOWN:
	default:
		buf_adds(why, "standby: postgres: connecting (no lock "
		    "connection)");
		return false;
	}
}

void
ha_status(struct ha *ha, struct buf *out)
{
	if (ha->state == HA_ACTIVE) {
		buf_adds(out, "active; ");
		relay_status(ha->relay, out);
		return;
	}
	(void)ha_health(ha, out);
}

void
ha_metrics(struct ha *ha, struct buf *out)
{
	prom_head(out, "pginval_active", "gauge", "1 when this daemon is the "
	    "active one of its channel's group, 0 when it is a standby");
	prom_sample(out, "pginval_active", NULL, ha->state == HA_ACTIVE);
	prom_counter(out, "pginval_takeovers_total", "times this daemon became "
	    "the active one", ha->takeovers);
	prom_counter(out, "pginval_fences_total", "times this daemon stopped "
	    "publishing because its lock connection was lost", ha->fences);
	if (ha->relay != NULL)
		relay_metrics(ha->relay, out);
}
