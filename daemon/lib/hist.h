/*
 * A latency histogram with fixed bounds (0.5 ms to 10 s), in seconds;
 * prom_hist() renders it. Knows nothing of pginval.
 */
#ifndef PGINVAL_HIST_H
#define PGINVAL_HIST_H

#define HIST_BUCKETS 14

struct hist {
	unsigned long buckets[HIST_BUCKETS];	/* not cumulative */
	unsigned long count;
	double sum;
};

/* The upper bound of each bucket. */
extern const double hist_bounds[HIST_BUCKETS];

/* Counts one observation; below 0 counts as 0. */
void hist_observe(struct hist *h, double seconds);

#endif
