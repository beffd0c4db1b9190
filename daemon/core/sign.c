/*
 * Checks the authenticator that ends every payload of pginval's triggers
 * (the format is in sign.h, the signing side in sql/pginval.sql). The key
 * keeps the SHA-256 states after its two padded blocks, so a payload costs
 * a copy of each and its own bytes.
 */
#include "core/sign.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <openssl/evp.h>
#include <string.h>

#define SIGN_HEAD ",\"m\":\""
#define SIGN_BLOCK 64

struct sign_key {
	EVP_MD_CTX *inner, *outer;	/* after ik, after ok */
	EVP_MD_CTX *work;
};

/* A lowercase hex digit's value plus one; 0 for any other byte. */
static const unsigned char hex_val[256] = {
	['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6,
	['6'] = 7, ['7'] = 8, ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12,
	['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

/* Decodes 2 * n lowercase hex digits; -1 on anything else. Every payload
 * has 64 of them: one table look-up each, and one test for them all. */
static int
hex_decode(const char *s, unsigned char *out, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	unsigned bad = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned hi = hex_val[p[2 * i]], lo = hex_val[p[2 * i + 1]];

		bad |= (hi == 0) | (lo == 0);
		out[i] = (unsigned char)((hi - 1) << 4 | (lo - 1));
	}
	return bad ? -1 : 0;
}

/* An allocation failure in libcrypto is one like any other (buf.h). */
static void
sign_ok(int r)
{
	if (r != 1)
		log_fatal("libcrypto: SHA-256 failed");
}

struct sign_key *
sign_key_new(const char *ik_hex, const char *ok_hex)
{
	unsigned char ik[SIGN_BLOCK], ok[SIGN_BLOCK];
	struct sign_key *k;

	if (strlen(ik_hex) != 2 * SIGN_BLOCK || strlen(ok_hex) != 2 * SIGN_BLOCK ||
	    hex_decode(ik_hex, ik, SIGN_BLOCK) == -1 ||
	    hex_decode(ok_hex, ok, SIGN_BLOCK) == -1)
		return NULL;
	k = xcalloc(1, sizeof(*k));
	if ((k->inner = EVP_MD_CTX_new()) == NULL ||
	    (k->outer = EVP_MD_CTX_new()) == NULL ||
	    (k->work = EVP_MD_CTX_new()) == NULL)
		log_fatal("libcrypto: out of memory");
	sign_ok(EVP_DigestInit_ex(k->inner, EVP_sha256(), NULL));
	sign_ok(EVP_DigestUpdate(k->inner, ik, sizeof(ik)));
	sign_ok(EVP_DigestInit_ex(k->outer, EVP_sha256(), NULL));
	sign_ok(EVP_DigestUpdate(k->outer, ok, sizeof(ok)));
	memset(ik, 0, sizeof(ik));
	memset(ok, 0, sizeof(ok));
	return k;
}

void
sign_key_free(struct sign_key *k)
{
	if (k == NULL)
		return;
	EVP_MD_CTX_free(k->inner);
	EVP_MD_CTX_free(k->outer);
	EVP_MD_CTX_free(k->work);
	free(k);
}

void
sign_mac(struct sign_key *k, const void *a, size_t an, const void *b,
    size_t bn, unsigned char out[SIGN_MAC_LEN])
{
	unsigned char inner[SIGN_MAC_LEN];

	sign_ok(EVP_MD_CTX_copy_ex(k->work, k->inner));
	sign_ok(EVP_DigestUpdate(k->work, a, an));
	if (bn > 0)
		sign_ok(EVP_DigestUpdate(k->work, b, bn));
	sign_ok(EVP_DigestFinal_ex(k->work, inner, NULL));
	sign_ok(EVP_MD_CTX_copy_ex(k->work, k->outer));
	sign_ok(EVP_DigestUpdate(k->work, inner, sizeof(inner)));
	sign_ok(EVP_DigestFinal_ex(k->work, out, NULL));
}

bool
sign_check(struct sign_key *k, const char *payload, size_t len)
{
	unsigned char want[SIGN_MAC_LEN], got[SIGN_MAC_LEN], diff = 0;
	const char *tail;
	size_t i;

	if (len < SIGN_SUFFIX_LEN)
		return false;
	tail = payload + len - SIGN_SUFFIX_LEN;
	if (memcmp(tail, SIGN_HEAD, strlen(SIGN_HEAD)) != 0 ||
	    memcmp(payload + len - 2, "\"}", 2) != 0 ||
	    hex_decode(tail + strlen(SIGN_HEAD), got, SIGN_MAC_LEN) == -1)
		return false;
	sign_mac(k, payload, (size_t)(tail - payload), "}", 1, want);
	for (i = 0; i < SIGN_MAC_LEN; i++)
		diff |= want[i] ^ got[i];
	return diff == 0;
}
