/*
 * SHA-256 (FIPS 180-4) and HMAC-SHA-256 (RFC 2104), for checking the
 * authenticator that pginval's triggers put on every payload. Pure, no
 * allocation. The HMAC key is given as its two padded blocks, which is
 * how the database stores it: ik = key ^ 0x36.., ok = key ^ 0x5c.., each
 * 64 bytes; their compressed states are kept so that a message costs two
 * compressions fewer.
 */
#ifndef PGINVAL_SHA256_H
#define PGINVAL_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32
#define SHA256_BLOCK 64

struct sha256 {
	uint32_t h[8];
	uint64_t total;			/* bytes absorbed */
	unsigned char block[SHA256_BLOCK];
	size_t used;			/* bytes waiting in block */
};

void sha256_init(struct sha256 *s);
void sha256_add(struct sha256 *s, const void *p, size_t n);
void sha256_done(struct sha256 *s, unsigned char out[SHA256_LEN]);

struct hmac_key {
	struct sha256 inner, outer;	/* after the ik and ok blocks */
};

void hmac_key_set(struct hmac_key *k, const unsigned char ik[SHA256_BLOCK],
    const unsigned char ok[SHA256_BLOCK]);
/* HMAC of the concatenation of a and b (b may be NULL with bn 0). */
void hmac_sha256(const struct hmac_key *k, const void *a, size_t an,
    const void *b, size_t bn, unsigned char out[SHA256_LEN]);

#endif
