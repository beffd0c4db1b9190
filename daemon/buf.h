/*
 * A growable byte buffer. Allocation failure is treated as fatal: the
 * daemon's memory is bounded by its queue limits, so running out means
 * the machine is in trouble and a restart is the honest answer.
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
/* Appends s as a quoted JSON string: quotes, backslashes and control
 * characters are escaped; other bytes pass through unchanged. */
void buf_add_json_str(struct buf *b, const char *s, size_t n);
/* Gives up ownership of the data to the caller and resets the buffer. */
char *buf_steal(struct buf *b);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);

/* malloc/calloc/strdup that exit with a message when memory is gone. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Whether two strings, either of which may be NULL, differ. */
int str_differs(const char *a, const char *b);

#endif
