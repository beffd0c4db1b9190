/*
 * The intrusive list of fifo.h. Putting back what was in flight ahead of
 * what waits is fifo_prepend(): a constant-time splice.
 */
#include "lib/fifo.h"

void
fifo_push(struct fifo *q, struct fifo_node *e)
{
	e->next = NULL;
	if (q->tail != NULL)
		q->tail->next = e;
	else
		q->head = e;
	q->tail = e;
	q->n++;
}

struct fifo_node *
fifo_pop(struct fifo *q)
{
	struct fifo_node *e = q->head;

	if (e == NULL)
		return NULL;
	q->head = e->next;
	if (q->head == NULL)
		q->tail = NULL;
	q->n--;
	e->next = NULL;
	return e;
}

void
fifo_prepend(struct fifo *to, struct fifo *from)
{
	if (from->head == NULL)
		return;
	from->tail->next = to->head;
	if (to->tail == NULL)
		to->tail = from->tail;
	to->head = from->head;
	to->n += from->n;
	from->head = from->tail = NULL;
	from->n = 0;
}
