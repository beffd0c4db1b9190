/*
 * Fuzzing of sign_check(), which reads every payload before anything
 * else does. The input is checked as it is, in a buffer of its exact size;
 * then it is taken as a payload's body, signed the way the triggers sign,
 * and the signed form must pass while the same with any one byte changed
 * must not.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../daemon/core/sign.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sign_key *key;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char ik[129], ok[129];

	for (int i = 0; i < 64; i++) {
		snprintf(ik + 2 * i, 3, "%02x", (unsigned)((i * 7) ^ 0x36) & 0xff);
		snprintf(ok + 2 * i, 3, "%02x", (unsigned)((i * 7) ^ 0x5c) & 0xff);
	}
	key = sign_key_new(ik, ok);
	return key == NULL;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char mac[SIGN_MAC_LEN];
	char *buf = malloc(size + 1), *wire;
	size_t n;

	memcpy(buf, data, size);
	(void)sign_check(key, buf, size);
	free(buf);

	/* data is the body without its closing brace. */
	n = size + SIGN_SUFFIX_LEN;
	wire = malloc(n);
	memcpy(wire, data, size);
	sign_mac(key, data, size, "}", 1, mac);
	memcpy(wire + size, ",\"m\":\"", 6);
	for (int i = 0; i < SIGN_MAC_LEN; i++)
		snprintf(wire + size + 6 + 2 * i, 3, "%02x", mac[i]);
	memcpy(wire + n - 2, "\"}", 2);
	if (!sign_check(key, wire, n)) {
		fprintf(stderr, "fuzz_sign: a signed payload failed\n");
		abort();
	}
	wire[size > 0 ? data[0] % n : 0] ^= 1;
	if (sign_check(key, wire, n)) {
		fprintf(stderr, "fuzz_sign: a changed payload passed\n");
		abort();
	}
	free(wire);
	return 0;
}
