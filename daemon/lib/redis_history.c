/*
 * The continuity rule for Redis nodes that may forget acknowledged
 * writes. A Redis keeps a replication id for its history and an offset
 * within it; a node that takes over a history (a promoted replica, or a
 * master restarted from a complete snapshot) keeps the old id as replid2,
 * valid up to second_repl_offset - 1. So a node holds every write
 * confirmed at offset C of history R when it is on R at an offset >= C,
 * or continues R from a point >= C. Anything else may have lost writes:
 * a restart without data, from an older snapshot, a promoted replica that
 * lagged, or (a false alarm, which is safe) two failovers unseen. Pure;
 * knows nothing of pginval.
 */
#include "lib/redis_history.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The fields redis_info_parse() needs, each exactly once. */
enum {
	INFO_RUN_ID, INFO_ROLE, INFO_REPLID, INFO_REPLID2, INFO_OFFSET,
	INFO_SECOND, INFO_NFIELDS
};

static const char *const info_names[INFO_NFIELDS] = {
	"run_id", "role", "master_replid", "master_replid2",
	"master_repl_offset", "second_repl_offset",
};

/* Copies the 40 hex digits v[0..n) into out[41]. */
static int
history_id(const char *v, size_t n, char *out)
{
	if (n != 40)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = v[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
		    (c >= 'A' && c <= 'F')))
			return -1;
	}
	memcpy(out, v, n);
	out[n] = '\0';
	return 0;
}

/* Reads the whole number v[0..n), at least min. */
static int
history_number(const char *v, size_t n, long long min, long long *out)
{
	char buf[32], *end;

	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, v, n);
	buf[n] = '\0';
	if (buf[0] != '-' && (buf[0] < '0' || buf[0] > '9'))
		return -1;
	errno = 0;
	*out = strtoll(buf, &end, 10);
	if (errno != 0 || *end != '\0' || *out < min)
		return -1;
	return 0;
}

static int
history_field(int f, const char *v, size_t n, struct redis_node_info *out)
{
	switch (f) {
	case INFO_RUN_ID:
		return history_id(v, n, out->run_id);
	case INFO_REPLID:
		return history_id(v, n, out->replid);
	case INFO_REPLID2:
		return history_id(v, n, out->replid2);
	case INFO_ROLE:
		if (n == 6 && memcmp(v, "master", 6) == 0)
			out->master = true;
		else if (n == 5 && memcmp(v, "slave", 5) == 0)
			out->master = false;
		else
			return -1;
		return 0;
	case INFO_OFFSET:
		return history_number(v, n, 0, &out->offset);
	case INFO_SECOND:
		return history_number(v, n, -1, &out->second_offset);
	}
	return -1;
}

int
redis_info_parse(const char *text, size_t len, struct redis_node_info *out)
{
	struct redis_node_info tmp;
	bool seen[INFO_NFIELDS] = { false };
	size_t pos = 0;

	memset(&tmp, 0, sizeof(tmp));
	while (pos < len) {
		const char *line = text + pos, *nl, *colon;
		size_t n, klen;

		nl = memchr(line, '\n', len - pos);
		n = nl != NULL ? (size_t)(nl - line) : len - pos;
		pos += n + (nl != NULL);
		if (n > 0 && line[n - 1] == '\r')
			n--;
		colon = memchr(line, ':', n);
		if (colon == NULL)
			continue;	/* "# Replication", a blank line */
		klen = (size_t)(colon - line);
		for (int f = 0; f < INFO_NFIELDS; f++) {
			if (strlen(info_names[f]) != klen ||
			    memcmp(info_names[f], line, klen) != 0)
				continue;
			if (seen[f] || history_field(f, colon + 1,
			    n - klen - 1, &tmp) < 0)
				return -1;
			seen[f] = true;
		}
	}
	for (int f = 0; f < INFO_NFIELDS; f++)
		if (!seen[f])
			return -1;
	*out = tmp;
	return 0;
}

static bool
history_is(const redisReply *r, const char *s)
{
	return (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
	    r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

int
redis_role_offset(const struct redisReply *role, bool *master,
    long long *offset)
{
	const redisReply *o;

	if (role == NULL || role->type != REDIS_REPLY_ARRAY ||
	    role->elements < 2)
		return -1;
	if (history_is(role->element[0], "master")) {
		o = role->element[1];
		if (o->type != REDIS_REPLY_INTEGER || o->integer < 0)
			return -1;
		*master = true;
	} else if (history_is(role->element[0], "slave") ||
	    history_is(role->element[0], "replica")) {
		if (role->elements < 5)
			return -1;
		o = role->element[4];
		if (o->type != REDIS_REPLY_INTEGER || o->integer < -1)
			return -1;
		*master = false;
	} else {
		return -1;
	}
	*offset = o->integer;
	return 0;
}

/* replid2 is all zeros when a node keeps no earlier history. */
static bool
history_none(const char *id)
{
	return id[strspn(id, "0")] == '\0';
}

enum redis_history_verdict
redis_history_check(const struct redis_history *h,
    const struct redis_node_info *now, char *why, size_t whylen)
{
	char dummy[1];
	long long from;

	if (why == NULL)
		why = dummy, whylen = sizeof(dummy);
	if (!h->known) {
		snprintf(why, whylen, "first contact: replication id %.8s at "
		    "offset %lld", now->replid, now->offset);
		return REDIS_HISTORY_FIRST;
	}
	if (strcmp(now->replid, h->replid) == 0) {
		if (now->offset < h->confirmed) {
			snprintf(why, whylen, "offset went back from %lld to "
			    "%lld in replication id %.8s", h->confirmed,
			    now->offset, now->replid);
			return REDIS_HISTORY_BROKEN;
		}
		if (strcmp(now->run_id, h->run_id) == 0) {
			snprintf(why, whylen, "same process, offset %lld",
			    now->offset);
			return REDIS_HISTORY_SAME;
		}
		snprintf(why, whylen, "run_id changed from %.8s to %.8s, "
		    "replication id %.8s kept at offset %lld", h->run_id,
		    now->run_id, now->replid, now->offset);
		return REDIS_HISTORY_CONTINUED;
	}
	if (strcmp(now->replid2, h->replid) == 0) {
		/* The old history holds up to second_repl_offset - 1. */
		from = now->second_offset - 1;
		if (from >= h->confirmed) {
			snprintf(why, whylen, "replication id %.8s continues "
			    "%.8s from offset %lld (a failover or a complete "
			    "restart)", now->replid, h->replid, from);
			return REDIS_HISTORY_CONTINUED;
		}
		snprintf(why, whylen, "offset went back from %lld to %lld "
		    "(replication id %.8s continued as %.8s)", h->confirmed,
		    from, h->replid, now->replid);
		return REDIS_HISTORY_BROKEN;
	}
	if (strcmp(now->run_id, h->run_id) == 0)
		snprintf(why, whylen, "replication id changed from %.8s to "
		    "%.8s without a restart", h->replid, now->replid);
	else if (history_none(now->replid2))
		snprintf(why, whylen, "restarted without replication history "
		    "(run_id %.8s, then %.8s)", h->run_id, now->run_id);
	else
		snprintf(why, whylen, "run_id changed and replication id is "
		    "new (%.8s, then %.8s)", h->replid, now->replid);
	return REDIS_HISTORY_BROKEN;
}

void
redis_history_learn(struct redis_history *h, const struct redis_node_info *now)
{
	h->known = true;
	memcpy(h->run_id, now->run_id, sizeof(h->run_id));
	memcpy(h->replid, now->replid, sizeof(h->replid));
	h->confirmed = now->offset;
}

/*
 * Makes room: drops the checkpoint whose loss leaves the smallest hole
 * for its age, never the first or the last. Holes then grow with age, so
 * that the checkpoints reach back as far as they can, more thinly.
 */
static void
history_thin(struct redis_history *h, uint64_t now)
{
	size_t drop = 1;
	double best = 0;

	for (size_t i = 1; i + 1 < h->nmarks; i++) {
		const struct redis_history_mark *m = h->marks;
		double hole = (double)(m[i + 1].mark - m[i - 1].mark) /
		    (double)(now - m[i - 1].mark + 1);

		if (i == 1 || hole < best)
			drop = i, best = hole;
	}
	memmove(&h->marks[drop], &h->marks[drop + 1],
	    (h->nmarks - drop - 1) * sizeof(h->marks[0]));
	h->nmarks--;
}

void
redis_history_confirm(struct redis_history *h, long long offset,
    uint64_t mark)
{
	struct redis_history_mark *last = h->nmarks > 0 ?
	    &h->marks[h->nmarks - 1] : NULL;

	h->confirmed = offset;
	if (mark == 0 || (last != NULL && last->mark >= mark &&
	    strcmp(last->replid, h->replid) == 0))
		return;	/* the lowest offset of a mark is the useful one */
	if (h->nmarks == REDIS_HISTORY_MARKS)
		history_thin(h, mark);
	last = &h->marks[h->nmarks++];
	memcpy(last->replid, h->replid, sizeof(last->replid));
	last->offset = offset;
	last->mark = mark;
}

uint64_t
redis_history_kept(struct redis_history *h, const struct redis_node_info *now)
{
	long long held;
	size_t n;

	/* How far h's history survives on the node, as in _check(). */
	if (strcmp(now->replid, h->replid) == 0)
		held = now->offset;
	else if (strcmp(now->replid2, h->replid) == 0)
		held = now->second_offset - 1;
	else
		held = -1;
	if (held > h->confirmed)
		held = h->confirmed;
	for (n = h->nmarks; n > 0; n--) {
		const struct redis_history_mark *m = &h->marks[n - 1];

		if (held >= 0 && strcmp(m->replid, h->replid) == 0 &&
		    m->offset <= held)
			break;
	}
	h->nmarks = n;
	return n > 0 ? h->marks[n - 1].mark : 0;
}

const char *
redis_history_name(enum redis_history_verdict v)
{
	switch (v) {
	case REDIS_HISTORY_FIRST: return "first";
	case REDIS_HISTORY_SAME: return "same";
	case REDIS_HISTORY_CONTINUED: return "continued";
	case REDIS_HISTORY_BROKEN: return "broken";
	}
	return "?";
}
