/*
 * Exponential backoff with jitter for both connections.
 */
#include "backoff.h"

#include <stdlib.h>

double
backoff_delay(const struct backoff *b, double rnd)
{
	double d = b->min;

	for (unsigned i = 0; i < b->attempt && d < b->max; i++)
		d *= 2;
	if (d > b->max)
		d = b->max;
	if (rnd < 0 || rnd >= 1)
		rnd = 0;
	return d * (0.5 + rnd / 2);
}

double
backoff_next(struct backoff *b)
{
	double d = backoff_delay(b, (double)random() / ((double)RAND_MAX + 1));

	if (b->attempt < 64)
		b->attempt++;
	return d;
}

void
backoff_reset(struct backoff *b)
{
	b->attempt = 0;
}
