/*
 * Unit tests for daemon/lib/sha256.c and daemon/core/sign.c: SHA-256
 * against the FIPS 180-4 examples, HMAC-SHA-256 against RFC 4231, and the payload
 * authenticator's check on signed, tampered and malformed payloads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "../../daemon/lib/sha256.h"
#include "../../daemon/core/sign.h"

#include "tcheck.h"

static void
hex(const unsigned char *d, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

/* The HMAC key blocks of RFC 2104 for a key of at most 64 bytes. */
static void
key_blocks(const char *key, size_t n, struct hmac_key *k, char *ik_hex,
    char *ok_hex)
{
	unsigned char ik[SHA256_BLOCK], ok[SHA256_BLOCK];

	for (size_t i = 0; i < SHA256_BLOCK; i++) {
		unsigned char c = i < n ? (unsigned char)key[i] : 0;

		ik[i] = c ^ 0x36;
		ok[i] = c ^ 0x5c;
	}
	hmac_key_set(k, ik, ok);
	if (ik_hex != NULL) {
		hex(ik, sizeof(ik), ik_hex);
		hex(ok, sizeof(ok), ok_hex);
	}
}

static void
test_sha256(void **state)
{
	static const struct {
		const char *name, *in, *want;
		int repeat;
	} cases[] = {
		{ "empty", "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934c"
		    "a495991b7852b855", 1 },
		{ "abc", "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9c"
		    "b410ff61f20015ad", 1 },
		{ "two blocks", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmno"
		    "mnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167"
		    "f6ecedd419db06c1", 1 },
		{ "a million a, in pieces of 10", "aaaaaaaaaa", "cdc76e5c9914fb92"
		    "81a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", 100000 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sha256 s;
		unsigned char d[SHA256_LEN];
		char got[2 * SHA256_LEN + 1];

		tcase = cases[i].name;
		sha256_init(&s);
		for (int r = 0; r < cases[i].repeat; r++)
			sha256_add(&s, cases[i].in, strlen(cases[i].in));
		sha256_done(&s, d);
		hex(d, sizeof(d), got);
		CHECK_STR(got, cases[i].want);
	}
	t_done();
}

/* Every length around the block and padding boundaries hashes the same
 * whether it is added at once or byte by byte. */
static void
test_sha256_boundaries(void **state)
{
	char in[200];

	memset(in, 'x', sizeof(in));
	for (size_t n = 0; n < sizeof(in); n++) {
		struct sha256 a, b;
		unsigned char da[SHA256_LEN], db[SHA256_LEN];

		sha256_init(&a);
		sha256_add(&a, in, n);
		sha256_done(&a, da);
		sha256_init(&b);
		for (size_t i = 0; i < n; i++)
			sha256_add(&b, in + i, 1);
		sha256_done(&b, db);
		tcase = "split";
		CHECK(memcmp(da, db, sizeof(da)) == 0);
	}
	t_done();
}

static void
test_hmac(void **state)
{
	static const struct {
		const char *name, *key, *data, *want;
		size_t keylen;
	} cases[] = {
		{ "RFC 4231 case 1", "\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b"
		    "\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b", "Hi There",
		    "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32"
		    "cff7", 20 },
		{ "RFC 4231 case 2", "Jefe", "what do ya want for nothing?",
		    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec"
		    "3843", 4 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct hmac_key k;
		unsigned char d[SHA256_LEN];
		char got[2 * SHA256_LEN + 1];
		size_t n = strlen(cases[i].data);

		tcase = cases[i].name;
		key_blocks(cases[i].key, cases[i].keylen, &k, NULL, NULL);
		hmac_sha256(&k, cases[i].data, n, NULL, 0, d);
		hex(d, sizeof(d), got);
		CHECK_STR(got, cases[i].want);
		/* In two pieces, as sign_check() feeds it. */
		hmac_sha256(&k, cases[i].data, n - 1, cases[i].data + n - 1, 1, d);
		hex(d, sizeof(d), got);
		CHECK_STR(got, cases[i].want);
	}
	t_done();
}

/* body with its authenticator under k, as the triggers write it. */
static char *
sign(const struct hmac_key *k, const char *body)
{
	size_t n = strlen(body);
	unsigned char d[SHA256_LEN];
	char *out = malloc(n + SIGN_SUFFIX_LEN);

	hmac_sha256(k, body, n, NULL, 0, d);
	memcpy(out, body, n - 1);
	memcpy(out + n - 1, ",\"m\":\"", 6);
	hex(d, sizeof(d), out + n + 5);
	memcpy(out + n + 69, "\"}", 3);
	return out;
}

static void
test_sign_check(void **state)
{
	struct hmac_key k, other, parsed;
	char ik[2 * SHA256_BLOCK + 1], ok[2 * SHA256_BLOCK + 1];
	char *good = NULL, *bad;
	const char *body = "{\"v\":1,\"t\":\"public.users\",\"op\":\"truncate\","
	    "\"ts\":1,\"x\":2}";

	key_blocks("pginval", 7, &k, ik, ok);
	key_blocks("pginvam", 7, &other, NULL, NULL);
	tcase = "key parse";
	CHECK(sign_key_parse(&parsed, ik, ok) == 0);
	good = sign(&parsed, body);
	tcase = "signed";
	CHECK(sign_check(&k, good, strlen(good)));
	CHECK_INT(strlen(good), strlen(body) + SIGN_SUFFIX_LEN - 1);
	tcase = "another key";
	CHECK(!sign_check(&other, good, strlen(good)));
	tcase = "unsigned";
	CHECK(!sign_check(&k, body, strlen(body)));
	tcase = "empty";
	CHECK(!sign_check(&k, "", 0));
	tcase = "only the suffix";
	CHECK(!sign_check(&k, good + strlen(body) - 1, SIGN_SUFFIX_LEN));

	bad = strdup(good);
	tcase = "a byte of the body changed";
	bad[15] ^= 1;
	CHECK(!sign_check(&k, bad, strlen(bad)));
	bad[15] ^= 1;
	tcase = "a digit of the MAC changed";
	bad[strlen(bad) - 3] = bad[strlen(bad) - 3] == '0' ? '1' : '0';
	CHECK(!sign_check(&k, bad, strlen(bad)));
	strcpy(bad, good);
	tcase = "upper-case hex";
	for (char *p = bad + strlen(body) + 5; *p != '"'; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	CHECK(!sign_check(&k, bad, strlen(bad)));
	strcpy(bad, good);
	tcase = "a trailing byte";
	CHECK(!sign_check(&k, bad, strlen(bad) - 1));
	free(bad);

	tcase = "bad keys";
	CHECK(sign_key_parse(&parsed, "", ok) == -1);
	ik[5] = 'g';
	CHECK(sign_key_parse(&parsed, ik, ok) == -1);
	ik[5] = 'A';
	CHECK(sign_key_parse(&parsed, ik, ok) == -1);
	free(good);
	t_done();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha256),
		cmocka_unit_test(test_sha256_boundaries),
		cmocka_unit_test(test_hmac),
		cmocka_unit_test(test_sign_check),
	};

	return cmocka_run_group_tests_name("sign", tests, NULL, NULL);
}
