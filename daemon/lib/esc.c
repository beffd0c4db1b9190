/*
 * Escaping of untrusted text (see esc.h for the forms). The log writer
 * runs every line through esc_str(), so it stays a single pass over a
 * bounded buffer with no allocation.
 */
#include "lib/esc.h"

#include <string.h>

size_t
esc_utf8_char(const unsigned char *s, size_t len, unsigned *cp)
{
	unsigned c = s[0], min, v;
	size_t n;

	if (c < 0x80) {
		n = 1, v = c, min = 0;
	} else if (c >= 0xC2 && c <= 0xDF) {
		n = 2, v = c & 0x1F, min = 0x80;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 3, v = c & 0x0F, min = 0x800;
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4, v = c & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (n > len)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		v = (v << 6) | (s[i] & 0x3F);
	}
	if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
		return 0;
	if (cp != NULL)
		*cp = v;
	return n;
}

/*
 * The escape for the character or stray byte at s, into out (at least 7
 * bytes); *in is how many input bytes it stands for. Returns the length
 * of the escape, or 0 when the bytes pass unchanged.
 */
static size_t
esc_one(const unsigned char *s, size_t len, char out[7], size_t *in)
{
	static const char hex[] = "0123456789abcdef";
	unsigned cp;
	size_t n = esc_utf8_char(s, len, &cp);

	*in = n;
	if (n == 0) {		/* not UTF-8: this byte alone */
		*in = 1;
		cp = s[0];
	} else if (cp == '\\' || cp == '\n' || cp == '\r' || cp == '\t') {
		out[0] = '\\';
		out[1] = cp == '\\' ? '\\' : cp == '\n' ? 'n' : cp == '\r' ?
		    'r' : 't';
		return 2;
	} else if (cp >= 0x80 && cp <= 0x9F) {
		memcpy(out, "\\u00", 4);
		out[4] = hex[cp >> 4];
		out[5] = hex[cp & 15];
		return 6;
	} else if (cp >= 0x20 && cp != 0x7F) {
		return 0;
	}
	out[0] = '\\';
	out[1] = 'x';
	out[2] = hex[cp >> 4];
	out[3] = hex[cp & 15];
	return 4;
}

size_t
esc_str(char *dst, size_t cap, const char *s, size_t len, size_t *used)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, o = 0;

	while (i < len) {
		char e[7];
		size_t in, elen;

		/* Printable ASCII, the common case, passes as it is. */
		if (u[i] >= 0x20 && u[i] < 0x7F && u[i] != '\\') {
			if (o + 1 >= cap)
				break;
			dst[o++] = (char)u[i++];
			continue;
		}
		elen = esc_one(u + i, len - i, e, &in);
		if (o + (elen ? elen : in) >= cap)
			break;
		if (elen == 0)
			memcpy(dst + o, u + i, in);
		else
			memcpy(dst + o, e, elen);
		o += elen ? elen : in;
		i += in;
	}
	dst[o] = '\0';
	if (used != NULL)
		*used = i;
	return o;
}

void
esc_buf(struct buf *b, const char *s, size_t len)
{
	size_t cap = ESC_MAX_RATIO * len + 1;

	buf_reserve(b, cap);
	b->len += esc_str(b->data + b->len, cap, s, len, NULL);
}

bool
esc_clean(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;

	for (size_t i = 0; i < len;) {
		char e[7];
		size_t in;

		if (esc_one(u + i, len - i, e, &in) != 0)
			return false;
		i += in;
	}
	return true;
}
