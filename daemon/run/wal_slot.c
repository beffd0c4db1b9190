/*
 * The WAL source's session before the stream, on its replication
 * connection: the session's settings, the slot's state and the channel's
 * publication and watched columns (pginval.wal_columns()) in one round
 * trip; then our own silent earlier link ended, or the slot dropped
 * when PostgreSQL invalidated it, or made when it is missing (with a
 * reset of the wal tables: what came before it is unknown); then
 * START_REPLICATION.
 */
#include "run/wal_int.h"
#include "core/pgoutput.h"
#include "core/wal_rel.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/pg_conn.h"
#include "lib/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAL_SLOT_TIMEOUT 600.0	/* creating a slot waits for transactions */

static uint64_t
wal_parse_lsn(const char *s)
{
	unsigned int hi, lo;

	if (s == NULL || sscanf(s, "%X/%X", &hi, &lo) != 2)
		return 0;
	return (uint64_t)hi << 32 | lo;
}

/* Appends s to q as a quoted SQL literal. */
static int
wal_literal(struct wal_source *ws, struct buf *q, const char *s)
{
	char *lit = PQescapeLiteral(pg_conn_pq(ws->conn), s, strlen(s));

	if (lit == NULL) {
		pg_conn_fail(ws->conn, "cannot quote a literal");
		return -1;
	}
	buf_adds(q, lit);
	PQfreemem(lit);
	return 0;
}

static void
wal_send(struct wal_source *ws, enum wal_phase phase, const char *sql)
{
	ws->phase = phase;
	if (pg_conn_query(ws->conn, sql, 0, NULL) == -1)
		return;		/* a reconnect is scheduled */
}

void
wal_setup(struct wal_source *ws)
{
	struct buf q = { 0 };

	/* Values come as their text output; the ISO DateStyle is the one
	 * wal_rel.c rewrites into to_jsonb()'s. */
	buf_adds(&q, PG_CONN_PIN_PATH "SET DateStyle = ISO; "
	    "SELECT pginval.publication(");
	if (wal_literal(ws, &q, ws->channel) == -1)
		goto out;
	buf_adds(&q, "), s.slot_type, s.plugin, s.database = "
	    "current_database(), s.wal_status, s.confirmed_flush_lsn, "
	    "s.active_pid, EXISTS (SELECT FROM pg_publication p WHERE "
	    "p.pubname = pginval.publication(");
	if (wal_literal(ws, &q, ws->channel) == -1)
		goto out;
	buf_adds(&q, ")) FROM (SELECT) x LEFT JOIN pg_replication_slots s "
	    "ON s.slot_name = ");
	if (wal_literal(ws, &q, ws->slot) == -1)
		goto out;
	buf_adds(&q, "; SELECT relid, table_name, col, typid, class "
	    "FROM pginval.wal_columns(");
	if (wal_literal(ws, &q, ws->channel) == -1)
		goto out;
	buf_adds(&q, ")");
	ws->nresult = 0;
	wal_rels_clear(ws->rels);
	buf_reset(&ws->tables);
	ws->ntables = 0;
	wal_send(ws, WAL_PHASE_SETUP, q.data);
out:
	buf_free(&q);
}

const char *
wal_res_error(const PGresult *res)
{
	const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	return m != NULL ? m : PQresStatus(PQresultStatus(res));
}

/* The slot's state: made when missing, again when invalidated; one of
 * another kind is not pginval's to touch. */
static void
wal_slot_result(struct wal_source *ws, const PGresult *res)
{
	const char *type, *plugin;

	if (PQntuples(res) != 1 || PQnfields(res) != 8) {
		pg_conn_fail(ws->conn, "unexpected reply about the slot");
		return;
	}
	free(ws->publication);
	ws->publication = xstrdup(PQgetvalue(res, 0, 0));
	ws->slot_missing = PQgetisnull(res, 0, 1);
	ws->slot_lost = false;
	ws->pub_exists = strcmp(PQgetvalue(res, 0, 7), "t") == 0;
	if (ws->slot_missing)
		return;
	type = PQgetvalue(res, 0, 1);
	plugin = PQgetvalue(res, 0, 2);
	if (strcmp(type, "logical") != 0 || strcmp(plugin, "pgoutput") != 0 ||
	    strcmp(PQgetvalue(res, 0, 3), "t") != 0) {
		wal_fail(ws, "replication slot \"%s\" exists but is not a "
		    "pgoutput slot of this database: pginval leaves it alone; "
		    "drop it, or set [postgres] slot to another name",
		    ws->slot);
		return;
	}
	ws->slot_lost = strcmp(PQgetvalue(res, 0, 4), "lost") == 0;
	ws->slot_flush = wal_parse_lsn(PQgetvalue(res, 0, 5));
	ws->slot_pid = atoi(PQgetvalue(res, 0, 6));
}

static void
wal_columns_result(struct wal_source *ws, const PGresult *res)
{
	const char *last = NULL;

	if (PQnfields(res) != 5) {
		pg_conn_fail(ws->conn, "unexpected reply from "
		    "pginval.wal_columns()");
		return;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		const char *table = PQgetvalue(res, i, 1);

		wal_rels_watch(ws->rels, (uint32_t)strtoul(PQgetvalue(res, i, 0),
		    NULL, 10), PQgetvalue(res, i, 2),
		    (uint32_t)strtoul(PQgetvalue(res, i, 3), NULL, 10),
		    wal_class_parse(PQgetisnull(res, i, 4) ? NULL :
		    PQgetvalue(res, i, 4)));
		if (last == NULL || strcmp(last, table) != 0) {
			buf_add(&ws->tables, table, strlen(table) + 1);
			ws->ntables++;
		}
		last = table;
	}
}

static void
wal_streaming(struct wal_source *ws)
{
	PGconn *pq = pg_conn_pq(ws->conn);

	ws->phase = WAL_PHASE_STREAMING;
	ws->last_pid = PQbackendPID(pq);
	if (ws->slot_flush > ws->flush)
		ws->flush = ws->slot_flush;
	ws->heard_at = ws->status_at = ws->streamed_at = ev_now(ws->loop);
	log_info("wal: streaming slot \"%s\", publication \"%s\" (%s:%s, "
	    "database %s), from %X/%X; %zu tables", ws->slot, ws->publication,
	    PQhost(pq), PQport(pq), PQdb(pq), (unsigned)(ws->flush >> 32),
	    (unsigned)ws->flush, ws->ntables);
	wal_tell(ws, WAL_ITEM_STREAMING);
}

void
wal_result(struct wal_source *ws, const PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);

	switch (ws->phase) {
	case WAL_PHASE_SETUP:
		if (st == PGRES_COMMAND_OK)
			return;		/* the SETs */
		if (st != PGRES_TUPLES_OK) {
			wal_fail(ws, "cannot read the slot and the wal tables "
			    "(%s); fix: install pginval.sql version 3, and "
			    "check that the role may use replication",
			    wal_res_error(res));
			return;
		}
		if (ws->nresult++ == 0)
			wal_slot_result(ws, res);
		else
			wal_columns_result(ws, res);
		return;
	case WAL_PHASE_DROP:
	case WAL_PHASE_CREATE:
		if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
			wal_fail(ws, "cannot create replication slot \"%s\": "
			    "%s", ws->slot, wal_res_error(res));
		/* The slot starts at its consistent point. */
		else if (ws->phase == WAL_PHASE_CREATE && PQnfields(res) >= 2 &&
		    PQntuples(res) == 1)
			ws->slot_flush = wal_parse_lsn(PQgetvalue(res, 0, 1));
		return;
	case WAL_PHASE_START:
		if (st == PGRES_COPY_BOTH) {
			wal_streaming(ws);
			return;
		}
		wal_fail(ws, "cannot stream from replication slot \"%s\": %s",
		    ws->slot, wal_res_error(res));
		return;
	default:
		return;
	}
}

static void
wal_start(struct wal_source *ws)
{
	struct buf q = { 0 };

	/* publication_names is a list of identifiers, in a literal. The
	 * replication grammar knows only '...' with '' inside: no E'...',
	 * and a backslash is itself (PQescapeLiteral() would write E'\\'). */
	buf_adds(&q, "START_REPLICATION SLOT \"");
	buf_adds(&q, ws->slot);
	buf_adds(&q, "\" LOGICAL 0/0 (proto_version '1', messages 'true', "
	    "publication_names '\"");
	for (const char *p = ws->publication; *p != '\0'; p++) {
		if (*p == '"' || *p == '\'')
			buf_addc(&q, *p);
		buf_addc(&q, *p);
	}
	buf_adds(&q, "\"')");
	wal_send(ws, WAL_PHASE_START, q.data);
	buf_free(&q);
}

/*
 * CREATE_REPLICATION_SLOT. From PostgreSQL 17 the slot is a failover slot:
 * a standby with sync_replication_slots keeps a copy that survives its
 * promotion. Older servers get the legacy syntax they have always had.
 */
static void
wal_create(struct wal_source *ws)
{
	PGconn *pq = pg_conn_pq(ws->conn);
	char sql[200];

	if (wal_source_streamed(ws) && !ws->slot_lost && !ws->pub_gone)
		log_warnx("wal: replication slot \"%s\" is missing on %s:%s, "
		    "though this daemon streamed from it before (a failover "
		    "to a server without it?); making it again", ws->slot,
		    PQhost(pq), PQport(pq));
	log_info("wal: creating replication slot \"%s\" (it waits for "
	    "the transactions in progress to end)", ws->slot);
	snprintf(sql, sizeof(sql), PQserverVersion(pq) >= 170000 ?
	    "CREATE_REPLICATION_SLOT \"%s\" LOGICAL pgoutput "
	    "(SNAPSHOT 'nothing', FAILOVER true)" :
	    "CREATE_REPLICATION_SLOT \"%s\" LOGICAL pgoutput NOEXPORT_SNAPSHOT",
	    ws->slot);
	pg_conn_set_query_timeout(ws->conn, WAL_SLOT_TIMEOUT);
	wal_send(ws, WAL_PHASE_CREATE, sql);
}

/*
 * A new slot has a history of its own: positions from the old one (on
 * another server, after a failover, they may lie ahead of this one's WAL)
 * must never be confirmed to it, or it would skip changes it has not sent.
 */
static void
wal_made(struct wal_source *ws)
{
	for (struct fifo_node *n = ws->txns.head; n != NULL; n = n->next)
		((struct wal_txn *)n)->end_lsn = 0;
	ws->flush = ws->flush_sent = ws->slot_flush;
	ws->stats.received_lsn = ws->slot_flush;
}

void
wal_done(struct wal_source *ws)
{
	char sql[200];

	switch (ws->phase) {
	case WAL_PHASE_SETUP:
		if (ws->slot_lost) {
			log_warnx("wal: replication slot \"%s\" was invalidated "
			    "(PostgreSQL removed WAL it still needed: see "
			    "max_slot_wal_keep_size); making it again", ws->slot);
			snprintf(sql, sizeof(sql), "DROP_REPLICATION_SLOT \"%s\"",
			    ws->slot);
			wal_send(ws, WAL_PHASE_DROP, sql);
			return;
		}
		/* The slot cannot be decoded past the publication's drop
		 * (it reads the catalog as it was): it is made again, once
		 * the publication is back. */
		if (ws->pub_gone && !ws->slot_missing) {
			if (!ws->pub_exists) {
				wal_fail(ws, "publication \"%s\" of channel "
				    "\"%s\" is missing; fix: call pginval.watch() "
				    "again on the channel's wal tables",
				    ws->publication, ws->channel);
				return;
			}
			log_warnx("wal: publication \"%s\" was dropped while "
			    "replication slot \"%s\" still needed it, and "
			    "PostgreSQL cannot decode the slot past that; making "
			    "it again", ws->publication, ws->slot);
			snprintf(sql, sizeof(sql), "DROP_REPLICATION_SLOT \"%s\"",
			    ws->slot);
			wal_send(ws, WAL_PHASE_DROP, sql);
			return;
		}
		/* A link of ours that went silent (a half-open connection)
		 * holds the slot until wal_sender_timeout: it is ended, and
		 * waited for. Another daemon's is left alone. */
		if (!ws->slot_missing && ws->slot_pid != 0 &&
		    ws->slot_pid == ws->last_pid) {
			log_warnx("wal: replication slot \"%s\" is still held by "
			    "our previous link (backend %d), which went silent; "
			    "ending it", ws->slot, ws->slot_pid);
			snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend("
			    "%d, 5000)", ws->slot_pid);
			wal_send(ws, WAL_PHASE_TAKE, sql);
			return;
		}
		if (!ws->slot_missing) {
			wal_start(ws);
			return;
		}
		/* FALLTHROUGH */
	case WAL_PHASE_DROP:
		wal_create(ws);
		break;
	case WAL_PHASE_TAKE:
		wal_start(ws);
		break;
	case WAL_PHASE_CREATE:
		pg_conn_set_query_timeout(ws->conn, ws->health_interval > 0 ?
		    2 * ws->health_interval : 0);
		ws->stats.slots_created++;
		wal_made(ws);
		/* Streamed before in this run, and now missing: most likely
		 * a standby promoted without the slot (PostgreSQL < 17, or a
		 * slot not synchronized to it). */
		wal_reset_tables(ws, ws->slot_lost ? "the replication slot was "
		    "invalidated: changes may have been missed" : ws->pub_gone ?
		    "the publication was dropped while the replication slot "
		    "needed it: changes may have been missed" :
		    wal_source_streamed(ws) ? "the replication slot is missing on "
		    "this server (a failover?): changes may have been missed" :
		    "the replication slot was made: changes made before it "
		    "are unknown");
		ws->slot_lost = ws->slot_missing = ws->pub_gone = false;
		wal_start(ws);
		break;
	default:
		break;
	}
}

