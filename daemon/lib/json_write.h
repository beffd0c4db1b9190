/*
 * Writing JSON text. Pure; knows nothing of pginval.
 */
#ifndef PGINVAL_JSON_WRITE_H
#define PGINVAL_JSON_WRITE_H

#include <stddef.h>

#include "lib/buf.h"

/* Appends s as a quoted JSON string: quotes, backslashes and control
 * characters are escaped; other bytes pass through unchanged. */
void json_write_str(struct buf *b, const char *s, size_t n);

#endif
