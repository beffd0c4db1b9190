/*
 * Marks, and the repair of one target from the stream (apply_repair.h).
 * A mark is (run << MARK_SEQ_BITS) | seq; the epochs of the last
 * REPAIR_RUNS runs are kept to turn a mark back into (epoch, seq).
 */
#include "apply/apply_repair.h"
#include "apply/apply_target.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MARK_SEQ_BITS 40
#define MARK_SEQ_MAX ((UINT64_C(1) << MARK_SEQ_BITS) - 1)
#define REPAIR_RUNS 8

struct apply_repair {
	struct ev_loop *loop;
	char *stream;
	apply_replay_busy_fn *busy;
	apply_repair_cb *cb;
	void *arg;
	uint64_t mark;		/* the last one given */
	uint64_t run;
	char epochs[REPAIR_RUNS][sizeof(((struct message_seq *)0)->epoch)];

	struct apply_replay *replay;	/* made at the first repair */
	struct apply_target *target;	/* being repaired, or NULL */
	struct message_seq seq;		/* the last entry it replayed */
	struct message_seq last;	/* apply's last message at the start */
	bool reached;			/* the replay came to that one */
	struct message msg;
};

struct apply_repair *
apply_repair_new(struct ev_loop *loop, const char *stream,
    apply_replay_busy_fn *busy, apply_repair_cb *cb, void *arg)
{
	struct apply_repair *r = xcalloc(1, sizeof(*r));

	r->loop = loop;
	r->stream = xstrdup(stream);
	r->busy = busy;
	r->cb = cb;
	r->arg = arg;
	return r;
}

void
apply_repair_free(struct apply_repair *r)
{
	if (r == NULL)
		return;
	apply_replay_free(r->replay);
	message_free(&r->msg);
	free(r->stream);
	free(r);
}

uint64_t
apply_repair_mark(struct apply_repair *r, const char *epoch, uint64_t seq)
{
	char *e = r->epochs[r->run % REPAIR_RUNS];

	if (seq == 0 || seq > MARK_SEQ_MAX)
		return 0;
	if (r->mark == 0 || seq <= (r->mark & MARK_SEQ_MAX) ||
	    strncmp(e, epoch, sizeof(r->epochs[0])) != 0) {
		r->run++;
		e = r->epochs[r->run % REPAIR_RUNS];
		snprintf(e, sizeof(r->epochs[0]), "%s", epoch);
	}
	r->mark = (r->run << MARK_SEQ_BITS) | seq;
	return r->mark;
}

/* Ends the repair, telling the owner. */
static void
repair_end(struct apply_repair *r, const char *why)
{
	struct apply_target *t = r->target;

	r->target = NULL;
	apply_target_repairing(t, false, 0);
	r->cb(r->arg, t, why ? REPAIR_FAILED : REPAIR_DONE, NULL, why);
}

static bool
repair_replay_cb(void *arg, enum apply_replay_event ev, const char *payload,
    size_t len)
{
	struct apply_repair *r = arg;
	struct message *m = &r->msg;
	char err[64];

	if (r->target == NULL)
		return false;	/* cancelled */
	switch (ev) {
	case REPLAY_EVENT_ENTRY:
		if (message_parse(m, payload, len, err, sizeof(err)) == -1 ||
		    !message_has_seq(m) ||
		    message_seq_check(&r->seq, m->epoch, m->seq) !=
		    MESSAGE_GAP_NONE)
			return false;
		if (strcmp(r->last.epoch, m->epoch) == 0 &&
		    m->seq >= r->last.last)
			r->reached = true;
		r->cb(r->arg, r->target, REPAIR_ENTRY, m, NULL);
		return true;
	case REPLAY_EVENT_DONE:
		repair_end(r, r->reached ? NULL : "the stream ends before the "
		    "last message handled (it lost messages too)");
		break;
	case REPLAY_EVENT_FAILED:
		repair_end(r, payload);
		break;
	}
	return true;
}

static bool
repair_busy(void *arg)
{
	struct apply_repair *r = arg;

	return r->busy(r->arg);
}

bool
apply_repair_start(struct apply_repair *r, struct apply_target *t,
    uint64_t mark, const struct message_seq *last,
    const struct redis_conn_opts *conn, char *why, size_t whylen)
{
	uint64_t run = mark >> MARK_SEQ_BITS;

	if (r->target != NULL) {
		snprintf(why, whylen, "target %s is being repaired already",
		    apply_target_name(r->target));
		return false;
	}
	if (mark == 0 || run == 0 || r->run - run >= REPAIR_RUNS) {
		snprintf(why, whylen, "no message that it surely holds is "
		    "known");
		return false;
	}
	if (last->epoch[0] == '\0') {
		snprintf(why, whylen, "no last message is known");
		return false;
	}
	memset(&r->seq, 0, sizeof(r->seq));
	(void)message_seq_check(&r->seq, r->epochs[run % REPAIR_RUNS],
	    mark & MARK_SEQ_MAX);
	r->last = *last;
	r->reached = strcmp(r->seq.epoch, last->epoch) == 0 &&
	    r->seq.last >= last->last;
	r->target = t;
	apply_target_repairing(t, true, mark);
	if (r->replay == NULL) {
		r->replay = apply_replay_new(r->loop, conn, r->stream,
		    repair_busy, repair_replay_cb, r);
		apply_replay_start(r->replay);
	}
	log_warnx("target %s: replaying to it the messages after seq %llu of "
	    "epoch %.40s from the stream", apply_target_name(t),
	    (unsigned long long)(mark & MARK_SEQ_MAX), r->seq.epoch);
	apply_replay_from(r->replay, r->seq.epoch, r->seq.last);
	return true;
}

struct apply_target *
apply_repair_target(const struct apply_repair *r)
{
	return r->target;
}

void
apply_repair_cancel(struct apply_repair *r, struct apply_target *t)
{
	if (r == NULL || r->target == NULL || r->target != t)
		return;
	apply_replay_cancel(r->replay);
	r->target = NULL;
	apply_target_repairing(t, false, 0);
}
