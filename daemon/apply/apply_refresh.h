/*
 * Refresh queries of pginval apply: one non-blocking PostgreSQL
 * connection (pg_conn) that runs each table's refresh query for a key,
 * one at a time and in the order asked, and reports the first column of
 * the first row. A newer request for the same key supersedes an older one
 * that is still waiting or running: only the newest read may be stored,
 * since an older one may predate the change.
 */
#ifndef PGINVAL_APPLY_REFRESH_H
#define PGINVAL_APPLY_REFRESH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/strs.h"
#include "lib/pg_conn.h"

struct ev_loop;
struct apply_refresh;

enum apply_refresh_result {
	REFRESH_VALUE,		/* value holds the first column of the first row */
	REFRESH_MISSING,	/* no row, or a NULL */
	REFRESH_FAILED,		/* an error, a timeout, or PostgreSQL is away */
};

/* key and value are borrowed for the length of the call. A superseded
 * request reports nothing. */
typedef void apply_refresh_cb(void *arg, enum apply_refresh_result res,
    const char *key, size_t klen, const char *value, size_t vlen,
    long ttl_ms, int64_t ts);

struct apply_refresh *apply_refresh_new(struct ev_loop *loop,
    const struct pg_conn_opts *opts, int max_queue, apply_refresh_cb *cb,
    void *arg);
void apply_refresh_start(struct apply_refresh *r);
void apply_refresh_free(struct apply_refresh *r);
void apply_refresh_set_max_queue(struct apply_refresh *r, int max_queue);

/* Queues sql with params (copied) for key; while PostgreSQL is away, jobs
 * wait for the reconnect. When the queue is full, the callback reports
 * REFRESH_FAILED at once. */
void apply_refresh_push(struct apply_refresh *r, const char *sql,
    const struct strs *params, const char *key, size_t klen,
    long ttl_ms, int64_t ts);
size_t apply_refresh_pending(const struct apply_refresh *r);
bool apply_refresh_up(const struct apply_refresh *r);

#endif
