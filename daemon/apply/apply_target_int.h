/*
 * What apply_target.c (the queue, the connection, the API) and
 * apply_target_send.c (batching the queue into commands, and their
 * replies) share. Not for other modules.
 */
#ifndef PGINVAL_APPLY_TARGET_INT_H
#define PGINVAL_APPLY_TARGET_INT_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "apply/apply_target.h"
#include "lib/buf.h"
#include "lib/fifo.h"
#include "lib/log.h"

struct redis_router;
struct redis_router_node;
struct redis_sweep;

enum tcmd_kind {
	TCMD_INVALIDATE,
	TCMD_SET,
	TCMD_FLUSH,
};

struct tcmd {
	struct fifo_node node;	/* first: the target's lists link through it */
	enum tcmd_kind kind;
	struct buf key, value;
	int64_t ts;		/* change time, for the marker and the lag */
	long ttl_ms;
	struct redis_router_node *to;	/* FLUSH: one master */
};

struct apply_target {
	struct ev_loop *loop;
	apply_target_cb *cb;
	void *arg;
	struct apply_target_opts o;	/* numbers; strings are below */
	char *name;
	struct redis_router *router;
	struct redis_sweep *sweep;	/* resets, over every node */

	struct fifo queue;		/* waiting to be sent */
	size_t inflight;		/* commands with the router */
	ev_prepare pump_w;		/* sends what queued up, once per loop */
	char inval_sha[41], fill_sha[41];
	bool scripts_refused;		/* NOPERM, since the last connect */
	/* Scratch for one command: its arguments, and the text they point
	 * into (markers, numbers) as offsets, since the text may move. */
	const char **argv;
	size_t *argvlen, *argoff, nargv;
	struct buf text;
	struct apply_stats *stats;
	struct log_limit complaints;	/* about error replies */
	unsigned long history_breaks;	/* REDIS_CONN_EVENT_FORGOT */
	/* Marks (apply_target_mark()): the newest given, the newest whose
	 * writes were all answered (the links' checkpoints read it), and
	 * the one a FORGOT said the server still holds. */
	uint64_t mark, mark_done, forgot_mark;
	bool repairing;		/* mark_done stays put meanwhile */
};

/* The invalidation script's text (apply_target_send.c). */
extern const char target_invalidate_lua[];

void target_cmd_free(struct tcmd *c);
/* Counts an error reply, and logs it rate-limited. */
void target_complain(struct apply_target *t, const char *what,
    const char *err);
/* Sends what the queue holds before the loop next waits. */
void target_schedule(struct apply_target *t);
void target_pump_cb(struct ev_loop *loop, ev_prepare *w, int revents);
/* Idle: every write given so far was answered, up to the newest mark. */
void target_settle(struct apply_target *t);

#endif
