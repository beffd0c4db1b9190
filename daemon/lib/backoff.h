/*
 * Reconnection delays: exponential growth with jitter, so that many
 * daemons that lost the same server do not come back in lock-step.
 */
#ifndef PGINVAL_BACKOFF_H
#define PGINVAL_BACKOFF_H

struct backoff {
	double min;	/* seconds before the first retry */
	double max;	/* ceiling */
	unsigned attempt;	/* failures since the last success */
};

/*
 * The delay before retry number b->attempt (0-based): min * 2^attempt,
 * capped at max, then scaled by a jitter factor in [0.5, 1.0) taken from
 * rnd, which must lie in [0, 1). Pure; the caller supplies randomness.
 */
double backoff_delay(const struct backoff *b, double rnd);
/* backoff_delay() with random jitter, then counts the attempt. */
double backoff_next(struct backoff *b);
void backoff_reset(struct backoff *b);

#endif
