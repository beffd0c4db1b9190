/*
 * A growable byte buffer. It allocates with xalloc.h: running out of
 * memory is fatal. Knows nothing of pginval.
 */
#ifndef PGINVAL_BUF_H
#define PGINVAL_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct buf {
	char *data;	/* owned; always NUL-terminated when len > 0 */
	size_t len;
	size_t cap;
};

void buf_reserve(struct buf *b, size_t extra);
void buf_adds(struct buf *b, const char *s);

/* Inline: every byte of every message goes through these two. */
static inline void
buf_add(struct buf *b, const void *p, size_t n)
{
	if (b->len + n >= b->cap)
		buf_reserve(b, n);
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static inline void
buf_addc(struct buf *b, char c)
{
	if (b->len + 1 >= b->cap)
		buf_reserve(b, 1);
	b->data[b->len++] = c;
	b->data[b->len] = '\0';
}
void buf_add_i64(struct buf *b, int64_t v);
void buf_add_u64(struct buf *b, uint64_t v);
/* Gives up ownership of the data to the caller and resets the buffer. */
char *buf_steal(struct buf *b);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);

#endif
