/*
 * Exponential backoff with jitter for both connections.
 */
#include "lib/backoff.h"

#include <float.h>
#include <stdlib.h>

double
backoff_delay(const struct backoff *b, double rnd)
{
	double d = b->min, f;

	for (unsigned i = 0; i < b->attempt && d < b->max; i++)
		d *= 2;
	if (d > b->max)
		d = b->max;
	if (!(rnd >= 0 && rnd < 1))	/* also catches NaN */
		rnd = 0;
	f = 0.5 + rnd / 2;
	/* Just below 1, rnd / 2 + 0.5 rounds up to 1: keep it below. */
	if (f >= 1)
		f = 1 - DBL_EPSILON / 2;
	return d * f;
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
