/*
 * Refresh queries over pg_conn. Jobs wait in a FIFO; the head runs as a
 * parameterized query (text parameters, the key's template columns in
 * order), and its outcome is reported when the query is DONE. A lost
 * connection fails the running job; waiting ones run after the reconnect,
 * or fail at once when the queue is full. The caller has already
 * invalidated their keys, so a failed or late refresh leaves a key
 * deleted, never stale.
 */
#include "apply/apply_refresh.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <stdlib.h>
#include <string.h>

struct job {
	struct job *next;
	char *sql;
	struct strs params;
	struct buf key;
	long ttl_ms;
	int64_t ts;
	bool superseded;
	/* outcome, filled from the results */
	enum apply_refresh_result res;
	struct buf value;
};

struct apply_refresh {
	struct pg_conn *pg;
	apply_refresh_cb *cb;
	void *arg;
	int max_queue;
	struct job *head, *tail;	/* head is running when running */
	size_t n;
	bool running;
};

static void
job_free(struct job *j)
{
	free(j->sql);
	strs_free(&j->params);
	buf_free(&j->key);
	buf_free(&j->value);
	free(j);
}

static struct job *
refresh_pop(struct apply_refresh *r)
{
	struct job *j = r->head;

	if (j != NULL) {
		r->head = j->next;
		if (r->head == NULL)
			r->tail = NULL;
		r->n--;
	}
	return j;
}

static void
refresh_report(struct apply_refresh *r, struct job *j)
{
	if (!j->superseded)
		r->cb(r->arg, j->res, j->key.data ? j->key.data : "", j->key.len,
		    j->value.data ? j->value.data : "", j->value.len, j->ttl_ms,
		    j->ts);
	job_free(j);
}

static void
refresh_next(struct apply_refresh *r)
{
	const char **params;
	struct job *j = r->head;

	if (r->running || j == NULL || !pg_conn_ready(r->pg))
		return;
	params = xcalloc(j->params.n + 1, sizeof(*params));
	for (size_t i = 0; i < j->params.n; i++)
		params[i] = strs_get(&j->params, i, NULL);
	j->res = REFRESH_MISSING;
	r->running = true;
	if (pg_conn_query(r->pg, j->sql, (int)j->params.n,
	    (const char *const *)params) == -1)
		r->running = false;	/* the DOWN event failed the jobs */
	free(params);
}

/* Fails the running job: its connection is gone. Waiting jobs run after
 * the reconnect. */
static void
refresh_fail_running(struct apply_refresh *r)
{
	struct job *j;

	if (!r->running)
		return;
	r->running = false;
	j = refresh_pop(r);
	j->res = REFRESH_FAILED;
	refresh_report(r, j);
}

static void
refresh_pg_cb(void *arg, enum pg_conn_event ev, const PGresult *res,
    const PGnotify *n)
{
	struct apply_refresh *r = arg;
	struct job *j = r->running ? r->head : NULL;

	switch (ev) {
	case PG_CONN_EVENT_UP:
		refresh_next(r);
		break;
	case PG_CONN_EVENT_RESULT:
		if (j == NULL)
			break;
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			const char *msg = PQresultErrorMessage(res);

			log_warnx("refresh: %.*s: %.*s", (int)j->key.len,
			    j->key.data ? j->key.data : "",
			    (int)strcspn(msg, "\n"), msg);
			j->res = REFRESH_FAILED;
		} else if (j->res == REFRESH_MISSING && PQntuples(res) > 0 &&
		    PQnfields(res) > 0 && !PQgetisnull(res, 0, 0)) {
			buf_add(&j->value, PQgetvalue(res, 0, 0),
			    (size_t)PQgetlength(res, 0, 0));
			j->res = REFRESH_VALUE;
		}
		break;
	case PG_CONN_EVENT_DONE:
		if (j == NULL)
			break;
		r->running = false;
		refresh_pop(r);
		refresh_report(r, j);
		refresh_next(r);
		break;
	case PG_CONN_EVENT_COPY:	/* no COPY is started */
		break;
	case PG_CONN_EVENT_DOWN:
		refresh_fail_running(r);
		break;
	case PG_CONN_EVENT_NOTIFY:
		break;
	}
}

struct apply_refresh *
apply_refresh_new(struct ev_loop *loop, const struct pg_conn_opts *opts,
    int max_queue, apply_refresh_cb *cb, void *arg)
{
	struct apply_refresh *r = xcalloc(1, sizeof(*r));

	r->cb = cb;
	r->arg = arg;
	r->max_queue = max_queue;
	r->pg = pg_conn_new(loop, opts, refresh_pg_cb, r);
	return r;
}

void
apply_refresh_start(struct apply_refresh *r)
{
	pg_conn_start(r->pg);
}

void
apply_refresh_set_max_queue(struct apply_refresh *r, int max_queue)
{
	r->max_queue = max_queue;
}

void
apply_refresh_free(struct apply_refresh *r)
{
	struct job *j;

	if (r == NULL)
		return;
	pg_conn_free(r->pg);
	while ((j = refresh_pop(r)) != NULL)
		job_free(j);
	free(r);
}

void
apply_refresh_push(struct apply_refresh *r, const char *sql,
    const struct strs *params, const char *key, size_t klen,
    long ttl_ms, int64_t ts)
{
	struct job *j = xcalloc(1, sizeof(*j)), **pp;

	j->sql = xstrdup(sql);
	for (size_t i = 0; i < params->n; i++) {
		size_t len;
		const char *p = strs_get(params, i, &len);

		strs_add(&j->params, p, len);
	}
	buf_add(&j->key, key, klen);
	j->ttl_ms = ttl_ms;
	j->ts = ts;
	if (r->n >= (size_t)r->max_queue) {
		j->res = REFRESH_FAILED;
		refresh_report(r, j);
		return;
	}
	/* Older requests for the key: a waiting one is dropped, a running
	 * one will not be reported. */
	for (pp = &r->head; *pp != NULL;) {
		struct job *o = *pp;

		if (o->key.len != klen || memcmp(o->key.data, key, klen) != 0) {
			pp = &o->next;
		} else if (o == r->head && r->running) {
			o->superseded = true;
			pp = &o->next;
		} else {
			*pp = o->next;
			if (r->tail == o)
				r->tail = NULL;
			r->n--;
			job_free(o);
		}
	}
	/* The tail may have been removed: find it again. */
	r->tail = NULL;
	for (struct job *o = r->head; o != NULL; o = o->next)
		r->tail = o;
	if (r->tail != NULL)
		r->tail->next = j;
	else
		r->head = j;
	r->tail = j;
	r->n++;
	refresh_next(r);
}

size_t
apply_refresh_pending(const struct apply_refresh *r)
{
	return r->n;
}

bool
apply_refresh_up(const struct apply_refresh *r)
{
	return pg_conn_up(r->pg);
}
