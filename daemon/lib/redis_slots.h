/*
 * Redis Cluster without I/O: the hash slot of a key (CRC16 and hash
 * tags), the slot map read from a CLUSTER SLOTS reply, the reading of
 * cluster errors and redirects (MOVED, ASK, TRYAGAIN...), and the
 * grouping of keys by slot for multi-key commands. Pure; knows nothing
 * of pginval.
 */
#ifndef PGINVAL_REDIS_SLOTS_H
#define PGINVAL_REDIS_SLOTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#define REDIS_SLOTS 16384
/* The longest host name or address a map or a redirect holds. */
#define REDIS_HOST_MAX 255

/*
 * The slot of key[0..len), binary-safe: CRC16 (XMODEM) of the hashed
 * part, modulo 16384. The hashed part is what lies between the first '{'
 * and the first '}' after it when that is not empty, else the whole key.
 */
unsigned redis_keyslot(const char *key, size_t len);

/* Whether s[0..n) is a host name or address that a server may give and
 * that can be used, logged and shown as it is: at most REDIS_HOST_MAX
 * bytes, printable, no spaces. */
bool redis_host_ok(const char *s, size_t n);

/* A master, with the ids of its replicas, which name its shard. */
struct redis_node {
	char *host;		/* the seed's host when the server gave none */
	int port;
	char *id;		/* the node id, as CLUSTER SLOTS gives it */
	char **replicas;	/* ids of the replicas listed with it */
	size_t nreplicas;
};

/*
 * A complete map: every slot has an owner. Owns its strings; free with
 * redis_slots_free().
 */
struct redis_slot_map {
	struct redis_node *masters;	/* unique, in order of first mention */
	size_t nmasters;
	uint16_t owner[REDIS_SLOTS];	/* slot -> index into masters */
};

/*
 * Reads a CLUSTER SLOTS reply (RESP2) into *m, which is zeroed or holds
 * a map from before: that map is freed on success only, so a refresh can
 * parse into the map in use and keep it when the reply is refused. Each
 * entry is [start, end, master, replica...], a node being
 * [host, port, id, ...]. Checked: the shape and types, slots within
 * 0..16383 with start <= end, no slot given twice, every slot covered,
 * ports 1..65535, hosts of at most REDIS_HOST_MAX printable bytes, one
 * address per node id, and one node per id (a replica's id is no master's
 * and under no other master). A host that is NULL, "" or "?" (the node does not
 * know its address) becomes seed_host, the host the reply came from.
 * Replicas only name the shard: they are not routed to. -1 with the
 * reason in err, *m then untouched.
 */
int redis_slots_parse(struct redis_slot_map *m, const struct redisReply *r,
    const char *seed_host, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* Frees the strings and zeroes *m (owner included). */
void redis_slots_free(struct redis_slot_map *m);

/*
 * Cluster errors, from the text of an error reply (hiredis gives it
 * without the leading '-'). Only the first word counts. CROSSSLOT and
 * anything unknown are REDIS_ERR_OTHER.
 *
 * hiredis's read.h already defines REDIS_ERR_OTHER (2, a reader error),
 * so that name cannot be an enumerator: the first kind takes its value
 * instead, and REDIS_ERR_OTHER names it all the same.
 */
enum redis_err_kind {
	REDIS_ERR_KIND_OTHER = REDIS_ERR_OTHER,
	REDIS_ERR_MOVED,	/* the slot has a new owner: refresh the map */
	REDIS_ERR_ASK,		/* this command only: ASKING, then resend */
	REDIS_ERR_TRYAGAIN,	/* resend to the same node after a delay */
	REDIS_ERR_CLUSTERDOWN,
	REDIS_ERR_READONLY,	/* a replica: the master moved */
	REDIS_ERR_NOSCRIPT,
	REDIS_ERR_LOADING,
	REDIS_ERR_MASTERDOWN,
};

/* Where a MOVED or ASK sends a slot. host "" means the host the command
 * was sent to: the caller puts it in. */
struct redis_redirect {
	unsigned slot;
	char host[REDIS_HOST_MAX + 1];
	int port;
};

/*
 * Classifies err[0..len), which need not end in NUL and is never read
 * past len. For MOVED and ASK, fills *r (may be NULL) from
 * "<MOVED|ASK> <slot> <host>:<port>", split at the last ':' so that an
 * IPv6 address stays whole; a "?" host is given as "". A malformed
 * redirect is REDIS_ERR_OTHER, with *r untouched.
 */
enum redis_err_kind redis_err_classify(const char *err, size_t len,
    struct redis_redirect *r);

/*
 * Groups keys by slot, for commands that take several keys (UNLINK),
 * which a cluster refuses across slots (CROSSSLOT). Fills slot[i] with the
 * slot of keys[i] (lens[i] bytes) and order[0..n) with the indices of the
 * keys sorted by slot; keys of one slot keep their order. Then
 *
 *	for (i = 0; i < n; i += run) {
 *		run = redis_slots_run(slot, order, n, i);
 *		... one command with keys order[i..i+run) ...
 *	}
 */
void redis_slots_group(const char *const *keys, const size_t *lens, size_t n,
    uint16_t *slot, size_t *order);
/* How many of order[from..n) share the slot of order[from] (at least 1
 * when from < n, else 0). */
size_t redis_slots_run(const uint16_t *slot, const size_t *order, size_t n,
    size_t from);

#endif
