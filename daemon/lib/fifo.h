/*
 * An intrusive first-in first-out list: an object that starts with a
 * struct fifo_node is queued without any allocation. The Redis sink keeps
 * its messages in them, the targets of pginval apply their commands.
 * Pure; the list owns nothing, its user frees what it holds.
 */
#ifndef PGINVAL_FIFO_H
#define PGINVAL_FIFO_H

#include <stddef.h>

/* The first member of a queued object, so that a pointer to the node
 * converts back to a pointer to the object. */
struct fifo_node {
	struct fifo_node *next;
};

struct fifo {
	struct fifo_node *head, *tail;
	size_t n;
};

/* Appends e, which must not be in a list. */
void fifo_push(struct fifo *q, struct fifo_node *e);
/* Unlinks and returns the first node; NULL when q is empty. */
struct fifo_node *fifo_pop(struct fifo *q);
/* Moves every node of from, in order, to the front of to; from ends
 * empty. */
void fifo_prepend(struct fifo *to, struct fifo *from);

#endif
