/*
 * Checks the authenticator that ends every payload of pginval's triggers
 * (the format is in sign.h, the signing side in sql/pginval.sql).
 */
#include "core/sign.h"

#include <string.h>

#define SIGN_HEAD ",\"m\":\""

static int
hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decodes 2 * n lowercase hex digits; -1 on anything else. */
static int
hex_decode(const char *s, unsigned char *out, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		int hi = hex_digit(s[2 * i]), lo;

		if (hi < 0 || (lo = hex_digit(s[2 * i + 1])) < 0)
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

int
sign_key_parse(struct hmac_key *k, const char *ik_hex, const char *ok_hex)
{
	unsigned char ik[SHA256_BLOCK], ok[SHA256_BLOCK];

	if (strlen(ik_hex) != 2 * SHA256_BLOCK ||
	    strlen(ok_hex) != 2 * SHA256_BLOCK ||
	    hex_decode(ik_hex, ik, SHA256_BLOCK) == -1 ||
	    hex_decode(ok_hex, ok, SHA256_BLOCK) == -1)
		return -1;
	hmac_key_set(k, ik, ok);
	memset(ik, 0, sizeof(ik));
	memset(ok, 0, sizeof(ok));
	return 0;
}

bool
sign_check(const struct hmac_key *k, const char *payload, size_t len)
{
	unsigned char want[SHA256_LEN], got[SHA256_LEN], diff = 0;
	const char *tail;
	size_t i;

	if (len < SIGN_SUFFIX_LEN)
		return false;
	tail = payload + len - SIGN_SUFFIX_LEN;
	if (memcmp(tail, SIGN_HEAD, strlen(SIGN_HEAD)) != 0 ||
	    memcmp(payload + len - 2, "\"}", 2) != 0 ||
	    hex_decode(tail + strlen(SIGN_HEAD), got, SHA256_LEN) == -1)
		return false;
	hmac_sha256(k, payload, (size_t)(tail - payload), "}", 1, want);
	for (i = 0; i < SHA256_LEN; i++)
		diff |= want[i] ^ got[i];
	return diff == 0;
}
