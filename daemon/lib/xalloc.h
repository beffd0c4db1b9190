/*
 * Allocation failure is treated as fatal: the daemon's memory is bounded
 * by its queue limits, so running out means the machine is in trouble
 * and a restart is the honest answer. Knows nothing of pginval.
 */
#ifndef PGINVAL_XALLOC_H
#define PGINVAL_XALLOC_H

#include <stddef.h>

/* malloc/calloc/strdup that exit with a message when memory is gone. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Whether two strings, either of which may be NULL, differ. */
int str_differs(const char *a, const char *b);

#endif
