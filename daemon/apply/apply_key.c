/*
 * Key helpers for pginval apply: marker names and hash slots. Everything
 * here is a pure function of its input, so that the unit test can drive
 * it with tables of cases, and so that the recipes in the README can
 * repeat the marker rule byte for byte.
 */
#include "apply/apply_key.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), the checksum
 * Redis Cluster uses for slots. */
static uint16_t
apply_crc16(const char *p, size_t len)
{
	uint16_t crc = 0;

	for (size_t i = 0; i < len; i++) {
		crc ^= (uint16_t)((unsigned char)p[i] << 8);
		for (int b = 0; b < 8; b++)
			crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) :
			    (uint16_t)(crc << 1);
	}
	return crc;
}

/* Finds the hash tag of key: true with *tag and *taglen when it has one. */
static bool
apply_key_tag(const char *key, size_t len, const char **tag, size_t *taglen)
{
	const char *open = memchr(key, '{', len), *close;

	if (open == NULL)
		return false;
	close = memchr(open + 1, '}', len - (size_t)(open + 1 - key));
	if (close == NULL || close == open + 1)
		return false;
	*tag = open + 1;
	*taglen = (size_t)(close - open - 1);
	return true;
}

unsigned
apply_key_slot(const char *key, size_t len)
{
	const char *tag;
	size_t taglen;

	if (apply_key_tag(key, len, &tag, &taglen))
		return apply_crc16(tag, taglen) & 16383;
	return apply_crc16(key, len) & 16383;
}

void
apply_marker_name(const char *key, size_t len, struct buf *out)
{
	const char *tag;
	size_t taglen;

	buf_adds(out, APPLY_MARKER_PREFIX "{");
	if (apply_key_tag(key, len, &tag, &taglen)) {
		buf_add(out, tag, taglen);
		buf_adds(out, "}:");
		buf_add(out, key, len);
	} else if (len > 0 && memchr(key, '}', len) == NULL) {
		buf_add(out, key, len);
		buf_addc(out, '}');
	} else {
		/* A tag cannot hold '}', nor be empty: borrow one that lands
		 * in the same slot. Every slot has a number below 100000. */
		unsigned want = apply_key_slot(key, len);
		char num[24];
		int n = 0;

		for (unsigned long i = 0;; i++) {
			n = snprintf(num, sizeof(num), "%lu", i);
			if ((apply_crc16(num, (size_t)n) & 16383) == want)
				break;
		}
		buf_add(out, num, (size_t)n);
		buf_adds(out, "}:");
		buf_add(out, key, len);
	}
}
