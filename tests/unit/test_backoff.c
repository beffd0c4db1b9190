/*
 * Unit tests for daemon/lib/backoff.c: delay growth, the cap, jitter bounds,
 * bad random input, backoff_next() and backoff_reset().
 */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "../../daemon/lib/backoff.h"

#include "tcheck.h"

/* got must equal want to a relative 1e-12 (both finite). */
#define CHECK_NEAR(got, want) do { \
	double g_ = (got), w_ = (want); \
	if (!(fabs(g_ - w_) <= 1e-12 * fmax(1, fabs(w_)))) \
		t_fail(__LINE__, "%s is %.17g, want %.17g", #got, g_, w_); \
} while (0)

/* The largest double below 1: the top of the documented rnd range. */
#define RND_MAX_BELOW_1 (1 - DBL_EPSILON / 2)

/* min * 2^attempt capped at max, computed independently. */
static double
nominal(double min, double max, unsigned attempt)
{
	double d = min * pow(2, attempt > 2000 ? 2000 : attempt);

	return d > max ? max : d;
}

struct delay_case {
	const char *name;
	double min, max;
	unsigned attempt;
	double rnd;
	double want;
};

static const struct delay_case delay_cases[] = {
	{ "first retry, rnd 0", 0.1, 30, 0, 0, 0.05 },
	{ "first retry, rnd 0.5", 0.1, 30, 0, 0.5, 0.075 },
	{ "first retry, rnd 0.25", 0.1, 30, 0, 0.25, 0.0625 },
	{ "attempt 1 doubles", 0.1, 30, 1, 0, 0.1 },
	{ "attempt 2", 0.1, 30, 2, 0, 0.2 },
	{ "attempt 3", 0.1, 30, 3, 0, 0.4 },
	{ "attempt 3, rnd 0.5", 0.1, 30, 3, 0.5, 0.6 },
	{ "attempt 8 under the cap", 0.1, 30, 8, 0, 12.8 },
	{ "attempt 9 capped", 0.1, 30, 9, 0, 15 },
	{ "attempt 9 capped, rnd 0.5", 0.1, 30, 9, 0.5, 22.5 },
	{ "attempt 63 capped", 0.1, 30, 63, 0, 15 },
	{ "attempt 64 capped", 0.1, 30, 64, 0, 15 },
	{ "huge attempt capped", 0.1, 30, UINT_MAX, 0, 15 },
	{ "exactly at the cap", 1, 8, 3, 0, 4 },
	{ "min equals max", 2, 2, 5, 0, 1 },
	{ "min above max is capped", 5, 1, 0, 0, 0.5 },
	{ "zero min stays zero", 0, 30, 10, 0.5, 0 },
	{ "whole seconds", 1, 3600, 10, 0, 512 },
	{ "bad rnd: negative", 0.1, 30, 0, -0.1, 0.05 },
	{ "bad rnd: 1", 0.1, 30, 0, 1, 0.05 },
	{ "bad rnd: 2", 0.1, 30, 3, 2, 0.4 },
	{ "bad rnd: NaN", 0.1, 30, 0, NAN, 0.05 },
	{ "bad rnd: +inf", 0.1, 30, 0, INFINITY, 0.05 },
	{ "bad rnd: -inf", 0.1, 30, 0, -INFINITY, 0.05 },
	{ "bad rnd: -0.0 is 0", 0.1, 30, 0, -0.0, 0.05 },
};

static void
test_delay_table(void **state)
{
	for (size_t i = 0; i < sizeof(delay_cases) / sizeof(delay_cases[0]); i++) {
		const struct delay_case *c = &delay_cases[i];
		struct backoff b = { c->min, c->max, c->attempt };
		double d;

		tcase = c->name;
		d = backoff_delay(&b, c->rnd);
		CHECK_NEAR(d, c->want);
		CHECK(d >= 0 && isfinite(d));
		/* Pure: the state is left alone. */
		CHECK(b.attempt == c->attempt);
	}
	t_done();
}

struct policy {
	const char *name;
	double min, max;
};

static const struct policy policies[] = {
	{ "daemon defaults", 0.1, 30 },
	{ "one second to an hour", 1, 3600 },
	{ "tiny", 0.001, 0.01 },
	{ "min equals max", 5, 5 },
	{ "awkward min", 0.3, 7.7 },
};

static const double rnds[] = {
	0, DBL_MIN, 1e-9, 0.1, 0.25, 1.0 / 3, 0.5, 0.75, 0.9, 0.999999,
	1 - 1e-15, RND_MAX_BELOW_1,
};

static const unsigned attempts[] = { 0, 1, 2, 3, 5, 8, 10, 13, 20, 31, 63, 64 };

/* For every rnd in [0, 1): nominal / 2 <= delay < nominal, and the delay
 * does not decrease as rnd grows. */
static void
test_jitter_bounds(void **state)
{
	char name[128];

	for (size_t p = 0; p < sizeof(policies) / sizeof(policies[0]); p++) {
		const struct policy *pol = &policies[p];

		for (size_t a = 0; a < sizeof(attempts) / sizeof(attempts[0]); a++) {
			struct backoff b = { pol->min, pol->max, attempts[a] };
			double nom = nominal(pol->min, pol->max, attempts[a]);
			double prev = 0;

			snprintf(name, sizeof(name), "%s, attempt %u", pol->name,
			    attempts[a]);
			tcase = name;
			for (size_t r = 0; r < sizeof(rnds) / sizeof(rnds[0]); r++) {
				double d = backoff_delay(&b, rnds[r]);

				if (!(d >= nom / 2 && d < nom))
					t_fail(__LINE__, "rnd %.17g: delay %.17g not in "
					    "[%.17g, %.17g)", rnds[r], d, nom / 2, nom);
				if (d < prev)
					t_fail(__LINE__, "rnd %.17g: delay %.17g below "
					    "the previous %.17g", rnds[r], d, prev);
				prev = d;
			}
			/* rnd 0 gives exactly half. */
			CHECK(backoff_delay(&b, 0) == nom / 2);
		}
	}
	t_done();
}

struct next_case {
	const char *name;
	double min, max;
	unsigned start;		/* attempt before the first call */
	unsigned calls;
	unsigned end;		/* attempt after them */
};

static const struct next_case next_cases[] = {
	{ "from zero, one call", 0.1, 30, 0, 1, 1 },
	{ "from zero, ten calls", 0.1, 30, 0, 10, 10 },
	{ "from zero, into the cap", 0.1, 30, 0, 20, 20 },
	{ "from five", 1, 60, 5, 3, 8 },
	{ "stops counting at 64", 0.1, 30, 60, 10, 64 },
	{ "already at 64", 0.1, 30, 64, 3, 64 },
};

static void
test_next(void **state)
{
	srandom(12345);
	for (size_t i = 0; i < sizeof(next_cases) / sizeof(next_cases[0]); i++) {
		const struct next_case *c = &next_cases[i];
		struct backoff b = { c->min, c->max, c->start };

		tcase = c->name;
		for (unsigned n = 0; n < c->calls; n++) {
			double nom = nominal(c->min, c->max, b.attempt);
			unsigned before = b.attempt;
			double d = backoff_next(&b);

			if (!(d >= nom / 2 && d < nom))
				t_fail(__LINE__, "call %u: delay %.17g not in "
				    "[%.17g, %.17g)", n, d, nom / 2, nom);
			if (b.attempt != (before < 64 ? before + 1 : 64))
				t_fail(__LINE__, "call %u: attempt %u after %u",
				    n, b.attempt, before);
		}
		CHECK(b.attempt == c->end);
		/* The policy itself is not touched. */
		CHECK(b.min == c->min && b.max == c->max);
	}
	t_done();
}

/* Many draws: the jitter really varies and stays in range. */
static void
test_next_spread(void **state)
{
	struct backoff b = { 1, 1, 0 };
	double lo = 1, hi = 0;

	srandom(42);
	for (int i = 0; i < 10000; i++) {
		double d = backoff_next(&b);

		assert_true(d >= 0.5 && d < 1);
		lo = fmin(lo, d);
		hi = fmax(hi, d);
	}
	assert_true(lo < 0.55);
	assert_true(hi > 0.95);
}

struct reset_case {
	const char *name;
	unsigned failures;	/* backoff_next() calls before the reset */
};

static const struct reset_case reset_cases[] = {
	{ "fresh", 0 },
	{ "after one failure", 1 },
	{ "after many failures", 30 },
	{ "after the counter stopped", 100 },
};

static void
test_reset(void **state)
{
	srandom(7);
	for (size_t i = 0; i < sizeof(reset_cases) / sizeof(reset_cases[0]); i++) {
		const struct reset_case *c = &reset_cases[i];
		struct backoff b = { 0.1, 30, 0 };
		double d;

		tcase = c->name;
		for (unsigned n = 0; n < c->failures; n++)
			(void)backoff_next(&b);
		backoff_reset(&b);
		CHECK(b.attempt == 0);
		CHECK(b.min == 0.1 && b.max == 30);
		/* The next delay is a first retry's again. */
		d = backoff_next(&b);
		CHECK(d >= 0.05 && d < 0.1);
		CHECK(b.attempt == 1);
	}
	t_done();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_delay_table),
		cmocka_unit_test(test_jitter_bounds),
		cmocka_unit_test(test_next),
		cmocka_unit_test(test_next_spread),
		cmocka_unit_test(test_reset),
	};

	return cmocka_run_group_tests_name("backoff", tests, NULL, NULL);
}
