/*
 * The JSON string escaper of the encoders. Pure; knows nothing of
 * pginval.
 */
#include "lib/json_write.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* Whether none of the 8 bytes at s is below 0x20, '"' or '\\'. Each
 * test is exact about whether any byte matches (a borrow runs only past
 * a byte that matched), and bytes of 0x80 and above never match. */
static inline bool
json_plain8(const char *s)
{
	uint64_t w, q, bs;

	memcpy(&w, s, sizeof(w));
	q = w ^ (ONES * '"');
	bs = w ^ (ONES * '\\');
	return ((((w - ONES * 0x20) & ~w) | ((q - ONES) & ~q) |
	    ((bs - ONES) & ~bs)) & HIGHS) == 0;
}

void
json_write_str(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t run = 0;

	buf_reserve(b, n + 2);
	buf_addc(b, '"');
	for (size_t i = 0; i < n; i++) {
		unsigned char c;
		char esc[7];
		size_t elen = 2;

		/* Plain text, the usual case, 8 bytes at a time. */
		while (i + 8 <= n && json_plain8(s + i))
			i += 8;
		if (i == n)
			break;
		c = (unsigned char)s[i];
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		/* Flush the plain run before this byte, then its escape. */
		buf_add(b, s + run, i - run);
		run = i + 1;
		esc[0] = '\\';
		switch (c) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			elen = 6;
		}
		buf_add(b, esc, elen);
	}
	buf_add(b, s + run, n - run);
	buf_addc(b, '"');
}
