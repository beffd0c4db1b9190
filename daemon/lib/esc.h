/*
 * Escaping of untrusted text for terminals and log lines. Row values,
 * table and column names, payloads and server messages are data: shown
 * through esc_str(), no byte of them can move a cursor, set a window
 * title, write the clipboard (OSC 52) or start a line of its own.
 *
 * Valid UTF-8 passes unchanged, except:
 *   \\          a backslash, so that every escape below is unambiguous
 *   \n \r \t    newline, carriage return, tab
 *   \xNN        any other C0 control, DEL, and each byte that is not part
 *               of valid UTF-8 (a stray 0x80-0xFF, an overlong form, a
 *               surrogate, a truncated sequence)
 *   \u0080..\u009f  a C1 control encoded as UTF-8
 * Pure; knows nothing of pginval.
 */
#ifndef PGINVAL_ESC_H
#define PGINVAL_ESC_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/buf.h"

/* The most bytes of output one byte of input can need. */
#define ESC_MAX_RATIO 4

/*
 * Writes s[0..len) escaped into dst (cap > 0 bytes, NUL-terminated),
 * stopping before an escape or a character that would not fit whole.
 * Returns the length written; *used (may be NULL) is how much of s went
 * in, len when all of it did. cap >= ESC_MAX_RATIO * len + 1 always fits.
 */
size_t esc_str(char *dst, size_t cap, const char *s, size_t len, size_t *used);
/* Appends s[0..len) escaped to b. */
void esc_buf(struct buf *b, const char *s, size_t len);
/*
 * The length of the UTF-8 character at s[0..len): 1 to 4, or 0 when the
 * bytes there are not valid UTF-8 (nothing overlong, no surrogate, nothing
 * above U+10FFFF). *cp (may be NULL) gets its code point.
 */
size_t esc_utf8_char(const unsigned char *s, size_t len, unsigned *cp);
/* Whether every byte of s[0..len) passes esc_str() unchanged. */
bool esc_clean(const char *s, size_t len);

#endif
