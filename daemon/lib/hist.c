/*
 * A latency histogram with fixed bounds, in seconds. Knows nothing of
 * pginval.
 */
#include "lib/hist.h"

#include <stddef.h>

const double hist_bounds[HIST_BUCKETS] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1, 2.5, 5, 10,
};

void
hist_observe(struct hist *h, double seconds)
{
	size_t i;

	if (seconds < 0)
		seconds = 0;
	for (i = 0; i < HIST_BUCKETS; i++)
		if (seconds <= hist_bounds[i]) {
			h->buckets[i]++;
			break;
		}
	h->count++;
	h->sum += seconds;
}
