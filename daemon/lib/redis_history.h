/*
 * Whether a Redis still holds every write it acknowledged, judged from
 * its replication history: run_id, replication ids and offsets, read
 * from INFO and ROLE at each connect and compared with what was known
 * before. A restart without data, a restart from an older snapshot and a
 * promoted replica that missed writes are told apart from a plain
 * reconnect, a complete restart and a graceful failover. Pure; knows
 * nothing of pginval.
 */
#ifndef PGINVAL_REDIS_HISTORY_H
#define PGINVAL_REDIS_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

/* A node's identity and replication position (ids: 40 hex digits). */
struct redis_node_info {
	char run_id[41], replid[41], replid2[41];
	long long offset;		/* master_repl_offset */
	long long second_offset;	/* second_repl_offset, -1 if none */
	bool master;			/* role:master */
};

/*
 * Reads the text of INFO server replication (or INFO, or INFO all):
 * run_id, role, master_replid, master_replid2, master_repl_offset and
 * second_repl_offset, each required once. Lines end in "\r\n" or "\n";
 * "# Section" lines and other fields are skipped. Never reads past len.
 * -1 if a field is missing, repeated or malformed.
 */
int redis_info_parse(const char *text, size_t len,
    struct redis_node_info *out) __attribute__((warn_unused_result));

/*
 * Reads a ROLE reply: ["master", offset, [...]] or ["slave", host, port,
 * state, offset] ("replica" too), the offset being -1 while a replica
 * syncs. -1 for anything else (an error, a sentinel's ROLE).
 */
int redis_role_offset(const struct redisReply *role, bool *master,
    long long *offset) __attribute__((warn_unused_result));

/* Checkpoints kept per node: when full, they thin out with age, so that
 * they reach back far. */
#define REDIS_HISTORY_MARKS 32

/*
 * A checkpoint: the owner's mark (a position in what it writes, which
 * only grows; 0 is none) read with a ROLE reply at offset of history
 * replid. Every write the mark stands for is at offset or before.
 */
struct redis_history_mark {
	char replid[41];
	long long offset;
	uint64_t mark;
};

/*
 * What is known of one target, Sentinel target or cluster shard: the
 * process and history last seen, and the offset of the last ROLE reply
 * read after writes, which covers every write acknowledged before it.
 * Starts zeroed.
 */
struct redis_history {
	bool known;
	char run_id[41], replid[41];
	long long confirmed;
	/* Writes were acknowledged after confirmed, and the link was then
	 * lost: no offset covers them, so only the same process surely has
	 * them. */
	bool unconfirmed;
	struct redis_history_mark marks[REDIS_HISTORY_MARKS];	/* oldest first */
	size_t nmarks;
};

enum redis_history_verdict {
	REDIS_HISTORY_FIRST,		/* nothing known before */
	REDIS_HISTORY_SAME,		/* same process, same history */
	REDIS_HISTORY_CONTINUED,	/* another process or node that holds
					 * every confirmed write */
	REDIS_HISTORY_BROKEN,		/* acknowledged writes may be lost */
};

/*
 * Compares the node connected to now with h. why (whylen bytes, may be
 * NULL) says in words what changed or held, naming ids by their first 8
 * digits at most. Call redis_history_learn() after it.
 */
enum redis_history_verdict redis_history_check(const struct redis_history *h,
    const struct redis_node_info *now, char *why, size_t whylen);
/* Takes now's run_id, replid and offset as the known state. */
void redis_history_learn(struct redis_history *h,
    const struct redis_node_info *now);
/* Records the offset of a ROLE reply read after writes on the node, and
 * mark (0: none) as a checkpoint at it. */
void redis_history_confirm(struct redis_history *h, long long offset,
    uint64_t mark);
/*
 * After a break (redis_history_check() said BROKEN, or CONTINUED with
 * h->unconfirmed): the newest mark whose writes the node connected to
 * now still holds, or 0 when none is known (a restart without data, a
 * new history). Checkpoints past that point are dropped, since the
 * offsets after it will be written again. Call before
 * redis_history_learn().
 */
uint64_t redis_history_kept(struct redis_history *h,
    const struct redis_node_info *now);
/* "first", "same", "continued", "broken". */
const char *redis_history_name(enum redis_history_verdict v);

#endif
