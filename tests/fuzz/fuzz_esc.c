/*
 * Fuzzing of the escaper behind every log line and `pginval tail`:
 * esc_str() and esc_clean().
 *
 * The input's first byte picks an output buffer size; the rest is the
 * text, any bytes. Properties checked:
 *   - the output holds no C0 control, DEL or C1 control, and is valid
 *     UTF-8;
 *   - undoing the escapes gives back exactly the input that went in;
 *   - a small buffer cuts only between whole escapes: the output is then
 *     the full escape of the part of the input it reports as used;
 *   - esc_clean() is true exactly when the output equals the input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../daemon/lib/esc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_esc: %s\n", what);
	abort();
}

static int
hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ?
	    c - 'a' + 10 : -1;
}

/* Undoes esc_str(); returns the length, or fails on a malformed escape. */
static size_t
unescape(const char *s, size_t n, unsigned char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int hi, lo;

		if (s[i] != '\\') {
			out[o++] = (unsigned char)s[i];
			continue;
		}
		if (++i >= n)
			fail("a lone backslash at the end");
		switch (s[i]) {
		case '\\': out[o++] = '\\'; break;
		case 'n': out[o++] = '\n'; break;
		case 'r': out[o++] = '\r'; break;
		case 't': out[o++] = '\t'; break;
		case 'x':
			if (i + 2 >= n)
				fail("a cut \\x escape");
			hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0)
				fail("a malformed \\x escape");
			out[o++] = (unsigned char)(hi * 16 + lo);
			i += 2;
			break;
		case 'u':
			if (i + 4 >= n || strncmp(s + i + 1, "00", 2) != 0)
				fail("a malformed \\u escape");
			hi = hexval(s[i + 3]), lo = hexval(s[i + 4]);
			if (hi < 8 || hi > 9 || lo < 0)
				fail("a \\u escape outside C1");
			out[o++] = 0xC2;
			out[o++] = (unsigned char)(hi * 16 + lo);
			i += 4;
			break;
		default:
			fail("an unknown escape");
		}
	}
	return o;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data + 1;
	size_t len, cap, full_cap, n, used, m;
	char *out, *full;
	unsigned char *back;

	if (size < 1)
		return 0;
	len = size - 1;
	cap = (size_t)data[0] + 1;
	full_cap = ESC_MAX_RATIO * len + 1;
	out = malloc(cap);
	full = malloc(full_cap);
	back = malloc(len + 1);

	n = esc_str(full, full_cap, text, len, &used);
	if (used != len || full[n] != '\0' || strlen(full) != n)
		fail("the bound did not fit all of the input");
	for (size_t i = 0; i < n;) {
		unsigned cp;
		size_t k = esc_utf8_char((const unsigned char *)full + i, n - i,
		    &cp);

		if (k == 0)
			fail("output is not UTF-8");
		if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F))
			fail("a control character in the output");
		i += k;
	}
	m = unescape(full, n, back);
	if (m != len || memcmp(back, text, len) != 0)
		fail("unescaping does not give the input back");
	if (esc_clean(text, len) != (n == len && memcmp(full, text, len) == 0))
		fail("esc_clean() disagrees with esc_str()");

	/* A cut: the escape of exactly the part used. */
	n = esc_str(out, cap, text, len, &used);
	if (n >= cap || out[n] != '\0' || used > len)
		fail("the cut output overruns");
	m = esc_str(full, full_cap, text, used, NULL);
	if (m != n || memcmp(full, out, n) != 0)
		fail("the cut falls inside an escape");
	free(out);
	free(full);
	free(back);
	return 0;
}
