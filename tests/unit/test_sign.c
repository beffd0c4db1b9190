/*
 * Unit tests for daemon/sign.c: HMAC-SHA-256 from the key blocks the
 * database stores, against RFC 4231, and the payload authenticator's check
 * on signed, tampered and malformed payloads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "../../daemon/core/sign.h"

#include "tcheck.h"

static void
hex(const unsigned char *d, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

/* The HMAC key blocks of RFC 2104 for a key of at most 64 bytes, in hex
 * as the database gives them, and the key made from them. */
static struct sign_key *
key_blocks(const char *key, size_t n, char *ik_hex, char *ok_hex)
{
	unsigned char ik[64], ok[64];

	for (size_t i = 0; i < 64; i++) {
		unsigned char c = i < n ? (unsigned char)key[i] : 0;

		ik[i] = c ^ 0x36;
		ok[i] = c ^ 0x5c;
	}
	hex(ik, sizeof(ik), ik_hex);
	hex(ok, sizeof(ok), ok_hex);
	return sign_key_new(ik_hex, ok_hex);
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
		struct sign_key *k;
		unsigned char d[SIGN_MAC_LEN];
		char got[2 * SIGN_MAC_LEN + 1], ik[129], ok[129];
		size_t n = strlen(cases[i].data);

		tcase = cases[i].name;
		k = key_blocks(cases[i].key, cases[i].keylen, ik, ok);
		sign_mac(k, cases[i].data, n, NULL, 0, d);
		hex(d, sizeof(d), got);
		CHECK_STR(got, cases[i].want);
		/* In two pieces, as sign_check() feeds it. */
		sign_mac(k, cases[i].data, n - 1, cases[i].data + n - 1, 1, d);
		hex(d, sizeof(d), got);
		CHECK_STR(got, cases[i].want);
		sign_key_free(k);
	}
	t_done();
}

/* body with its authenticator under k, as the triggers write it. */
static char *
sign(struct sign_key *k, const char *body)
{
	size_t n = strlen(body);
	unsigned char d[SIGN_MAC_LEN];
	char *out = malloc(n + SIGN_SUFFIX_LEN);

	sign_mac(k, body, n, NULL, 0, d);
	memcpy(out, body, n - 1);
	memcpy(out + n - 1, ",\"m\":\"", 6);
	hex(d, sizeof(d), out + n + 5);
	memcpy(out + n + 69, "\"}", 3);
	return out;
}

static void
test_sign_check(void **state)
{
	struct sign_key *k, *other;
	char ik[129], ok[129], ik2[129], ok2[129];
	char *good = NULL, *bad;
	const char *body = "{\"v\":1,\"t\":\"public.users\",\"op\":\"truncate\","
	    "\"ts\":1,\"x\":2}";

	k = key_blocks("pginval", 7, ik, ok);
	other = key_blocks("pginvam", 7, ik2, ok2);
	tcase = "key parse";
	CHECK(k != NULL && other != NULL);
	good = sign(k, body);
	tcase = "signed";
	CHECK(sign_check(k, good, strlen(good)));
	CHECK_INT(strlen(good), strlen(body) + SIGN_SUFFIX_LEN - 1);
	tcase = "another key";
	CHECK(!sign_check(other, good, strlen(good)));
	tcase = "unsigned";
	CHECK(!sign_check(k, body, strlen(body)));
	tcase = "empty";
	CHECK(!sign_check(k, "", 0));
	tcase = "only the suffix";
	CHECK(!sign_check(k, good + strlen(body) - 1, SIGN_SUFFIX_LEN));

	bad = strdup(good);
	tcase = "a byte of the body changed";
	bad[15] ^= 1;
	CHECK(!sign_check(k, bad, strlen(bad)));
	bad[15] ^= 1;
	tcase = "a digit of the MAC changed";
	bad[strlen(bad) - 3] = bad[strlen(bad) - 3] == '0' ? '1' : '0';
	CHECK(!sign_check(k, bad, strlen(bad)));
	strcpy(bad, good);
	tcase = "upper-case hex";
	for (char *p = bad + strlen(body) + 5; *p != '"'; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	CHECK(!sign_check(k, bad, strlen(bad)));
	strcpy(bad, good);
	tcase = "a trailing byte";
	CHECK(!sign_check(k, bad, strlen(bad) - 1));
	free(bad);

	tcase = "bad keys";
	CHECK(sign_key_new("", ok) == NULL);
	ik[5] = 'g';
	CHECK(sign_key_new(ik, ok) == NULL);
	ik[5] = 'A';
	CHECK(sign_key_new(ik, ok) == NULL);
	free(good);
	sign_key_free(k);
	sign_key_free(other);
	t_done();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hmac),
		cmocka_unit_test(test_sign_check),
	};

	return cmocka_run_group_tests_name("sign", tests, NULL, NULL);
}
