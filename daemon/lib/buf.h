/*
 * A growable byte buffer. It allocates with xalloc.h: running out of
 * memory is fatal. Knows nothing of pginval.
 */
#ifndef PGINVAL_BUF_H
#define PGINVAL_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
	char *data;	/* owned; always NUL-terminated when len > 0 */
	size_t len;
	size_t cap;
};

void buf_reserve(struct buf *b, size_t extra);
void buf_add(struct buf *b, const void *p, size_t n);
void buf_adds(struct buf *b, const char *s);
void buf_addc(struct buf *b, char c);
void buf_add_i64(struct buf *b, int64_t v);
void buf_add_u64(struct buf *b, uint64_t v);
/* Gives up ownership of the data to the caller and resets the buffer. */
char *buf_steal(struct buf *b);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);

#endif
