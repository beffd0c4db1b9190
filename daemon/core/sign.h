/*
 * The authenticator on pginval's payloads. Any role that can connect may
 * NOTIFY any channel, so a payload proves nothing by itself; the triggers
 * (SECURITY DEFINER, in sql/pginval.sql) end each one with an HMAC-SHA-256
 * under a key that only their owner and the daemon's role can read:
 *
 *     {"v":1,"t":"public.users",...,"m":"<64 lowercase hex digits>"}
 *
 * The MAC covers the payload as it would be without the "m" member: every
 * byte before ,"m":" and then the closing brace. Pure.
 */
#ifndef PGINVAL_SIGN_H
#define PGINVAL_SIGN_H

#include "lib/sha256.h"

#include <stdbool.h>
#include <stddef.h>

/* ,"m":" + 64 hex digits + "} */
#define SIGN_SUFFIX_LEN 72

/* The query that reads the key, and the parse of its one row (two
 * columns of 128 hex digits): 0, or -1 when they are not that. */
#define SIGN_KEY_QUERY \
	"SELECT encode(ik, 'hex'), encode(ok, 'hex') FROM pginval.secret"
int sign_key_parse(struct hmac_key *k, const char *ik_hex,
    const char *ok_hex) __attribute__((warn_unused_result));

/* Whether payload ends with a valid authenticator under k. Takes the same
 * time whichever byte of the MAC is wrong. */
bool sign_check(const struct hmac_key *k, const char *payload, size_t len);

#endif
