/*
 * SCAN + UNLINK sweeps. Each sweep has at most one SCAN awaiting its
 * reply; the UNLINK of a batch is sent before the next SCAN, so that
 * the keys are removed in the order the server handed them out. An
 * UNLINK's reply may come after its sweep has ended, so it carries the
 * sweeps as privdata, not the sweep.
 */
#include "redis_sweep.h"
#include "buf.h"
#include "redis_conn.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCAN_COUNT "1000"

struct sweep {
	struct sweep *next;
	struct redis_sweep *sw;
	char *pattern;
	size_t len;
	char cursor[24];
	bool running;		/* a SCAN is awaiting its reply */
	bool again;		/* asked for again while running */
};

struct redis_sweep {
	struct redis_conn *conn;
	bool merge;
	redis_sweep_cb *cb;
	void *arg;
	struct sweep *head;
};

static void redis_sweep_scan(struct sweep *s);

static void
redis_sweep_unlink_cb(void *arg, redisReply *reply, void *privdata)
{
	struct redis_sweep *sw = privdata;

	if (reply == NULL)
		return;
	if (reply->type == REDIS_REPLY_INTEGER)
		sw->cb(sw->arg, REDIS_SWEEP_EVENT_UNLINKED, NULL, NULL,
		    (unsigned long)reply->integer);
	else if (reply->type == REDIS_REPLY_ERROR)
		sw->cb(sw->arg, REDIS_SWEEP_EVENT_UNLINK_FAILED, NULL,
		    reply->str, 0);
}

/* UNLINKs the keys of one SCAN reply. */
static int
redis_sweep_unlink(struct redis_sweep *sw, const redisReply *keys)
{
	const char **argv = xmalloc((keys->elements + 1) * sizeof(*argv));
	size_t *argvlen = xmalloc((keys->elements + 1) * sizeof(*argvlen));
	int argc = 1, rc = 0;

	argv[0] = "UNLINK";
	argvlen[0] = 6;
	for (size_t i = 0; i < keys->elements; i++)
		if (keys->element[i]->type == REDIS_REPLY_STRING) {
			argv[argc] = keys->element[i]->str;
			argvlen[argc++] = keys->element[i]->len;
		}
	if (argc > 1)
		rc = redis_conn_command(sw->conn, redis_sweep_unlink_cb, sw,
		    argc, argv, argvlen);
	free(argv);
	free(argvlen);
	return rc;
}

static void
redis_sweep_done(struct sweep *s)
{
	for (struct sweep **pp = &s->sw->head; *pp != NULL; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	free(s->pattern);
	free(s);
}

static void
redis_sweep_scan_cb(void *arg, redisReply *reply, void *privdata)
{
	struct sweep *s = privdata;
	struct redis_sweep *sw = s->sw;

	s->running = false;
	if (reply == NULL)
		return;	/* started again after the reconnect */
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
	    reply->element[0]->type != REDIS_REPLY_STRING ||
	    reply->element[1]->type != REDIS_REPLY_ARRAY) {
		sw->cb(sw->arg, REDIS_SWEEP_EVENT_FAILED, s->pattern,
		    reply->type == REDIS_REPLY_ERROR ? reply->str :
		    "unexpected reply", 0);
		redis_sweep_done(s);
		return;
	}
	if (redis_sweep_unlink(sw, reply->element[1]) == -1)
		return;	/* the link is closing: started again after it */
	snprintf(s->cursor, sizeof(s->cursor), "%s", reply->element[0]->str);
	if (strcmp(s->cursor, "0") == 0) {
		if (!s->again) {
			sw->cb(sw->arg, REDIS_SWEEP_EVENT_DONE, s->pattern, NULL,
			    0);
			redis_sweep_done(s);
			return;
		}
		/* Keys it has passed may have been cached again since. */
		s->again = false;
	}
	redis_sweep_scan(s);
}

static void
redis_sweep_scan(struct sweep *s)
{
	const char *argv[] = { "SCAN", s->cursor, "MATCH", s->pattern,
	    "COUNT", SCAN_COUNT };
	size_t argvlen[] = { 4, strlen(s->cursor), 5, s->len, 5,
	    strlen(SCAN_COUNT) };

	if (!redis_conn_ready(s->sw->conn))
		return;
	s->running = redis_conn_command(s->sw->conn, redis_sweep_scan_cb, s, 6,
	    argv, argvlen) == 0;
}

struct redis_sweep *
redis_sweep_new(struct redis_conn *conn, bool merge, redis_sweep_cb *cb,
    void *arg)
{
	struct redis_sweep *sw = xcalloc(1, sizeof(*sw));

	sw->conn = conn;
	sw->merge = merge;
	sw->cb = cb;
	sw->arg = arg;
	return sw;
}

void
redis_sweep_free(struct redis_sweep *sw)
{
	struct sweep *s;

	if (sw == NULL)
		return;
	while ((s = sw->head) != NULL) {
		sw->head = s->next;
		free(s->pattern);
		free(s);
	}
	free(sw);
}

void
redis_sweep_add(struct redis_sweep *sw, const char *pattern, size_t len)
{
	struct sweep *s;

	for (s = sw->head; sw->merge && s != NULL; s = s->next)
		if (s->len == len && memcmp(s->pattern, pattern, len) == 0) {
			/* Keys it has passed may have been cached again
			 * since: go round once more. */
			s->again = true;
			return;
		}
	s = xcalloc(1, sizeof(*s));
	s->sw = sw;
	s->pattern = xstrndup(pattern, len);
	s->len = len;
	strcpy(s->cursor, "0");
	s->next = sw->head;
	sw->head = s;
	redis_sweep_scan(s);
}

void
redis_sweep_resume(struct redis_sweep *sw)
{
	for (struct sweep *s = sw->head; s != NULL; s = s->next)
		if (!s->running)
			redis_sweep_scan(s);
}

void
redis_sweep_reset(struct redis_sweep *sw)
{
	for (struct sweep *s = sw->head; s != NULL; s = s->next) {
		s->running = false;
		strcpy(s->cursor, "0");
	}
}

bool
redis_sweep_busy(const struct redis_sweep *sw)
{
	return sw->head != NULL;
}
