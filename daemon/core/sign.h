/*
 * The authenticator on pginval's payloads. Any role that can connect may
 * NOTIFY any channel, so a payload proves nothing by itself; the triggers
 * (SECURITY DEFINER, in sql/pginval.sql) end each one with an HMAC-SHA-256
 * under a key that only their owner and the daemon's role can read:
 *
 *     {"v":1,"t":"public.users",...,"m":"<64 lowercase hex digits>"}
 *
 * The MAC covers the payload as it would be without the "m" member: every
 * byte before ,"m":" and then the closing brace. SHA-256 is libcrypto's,
 * which uses the CPU's SHA instructions where it has them: every payload
 * is hashed whole before it is read, so this is on the hot path.
 */
#ifndef PGINVAL_SIGN_H
#define PGINVAL_SIGN_H

#include <stdbool.h>
#include <stddef.h>

/* ,"m":" + 64 hex digits + "} */
#define SIGN_SUFFIX_LEN 72
#define SIGN_MAC_LEN 32

/* The query that reads the key: one row, the two padded key blocks of
 * HMAC (key XOR 0x36.., key XOR 0x5c.., 64 bytes each) in hex. */
#define SIGN_KEY_QUERY \
	"SELECT encode(ik, 'hex'), encode(ok, 'hex') FROM pginval.secret"

struct sign_key;

/* A key from the two columns of SIGN_KEY_QUERY; NULL when they are not
 * 128 lowercase hex digits each. The caller frees it. */
struct sign_key *sign_key_new(const char *ik_hex, const char *ok_hex);
void sign_key_free(struct sign_key *k);

/* Whether payload ends with a valid authenticator under k. Takes the same
 * time whichever byte of the MAC is wrong. k is scratch space too: not for
 * two threads at once. */
bool sign_check(struct sign_key *k, const char *payload, size_t len);
/* The HMAC of the concatenation of a and b (bn may be 0). */
void sign_mac(struct sign_key *k, const void *a, size_t an, const void *b,
    size_t bn, unsigned char out[SIGN_MAC_LEN]);

#endif
