/*
 * Fuzzing of decode_event() and of the messages built from its events.
 *
 * The input is decoded twice: as a NUL-terminated string (the way NOTIFY
 * payloads arrive) and as an exact-size buffer with no terminator, so that
 * any read past len is caught. Whatever decodes goes around the round
 * trip of roundtrip.h: the message the daemon would PUBLISH must read
 * back to the same fields.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "roundtrip.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	roundtrip_init();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	char *exact = malloc(size ? size : 1);

	if (s == NULL || exact == NULL)
		abort();
	/* As a C string: the payload ends at the first NUL. */
	memcpy(s, data, size);
	s[size] = '\0';
	roundtrip(s, strlen(s));
	/* As a buffer of exactly size bytes, with no terminator. */
	memcpy(exact, data, size);
	roundtrip(exact, size);
	free(exact);
	free(s);
	return 0;
}
