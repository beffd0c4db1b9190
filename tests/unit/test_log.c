/*
 * Unit tests for daemon/lib/log.c: the rate limit of lines that an outside
 * party can make frequent (log_limit).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "../../daemon/lib/log.h"

#include "tcheck.h"

/* One call of log_limit at a time, and what it should answer. */
struct limit_step {
	double now;
	bool allowed;
	unsigned long suppressed;	/* in the window, after the call */
};

static const struct limit_step steps[] = {
	/* Ten lines in the first window, then silence. */
	{ 100.0, true, 0 }, { 100.1, true, 0 }, { 100.2, true, 0 },
	{ 101.0, true, 0 }, { 102.0, true, 0 }, { 103.0, true, 0 },
	{ 104.0, true, 0 }, { 105.0, true, 0 }, { 106.0, true, 0 },
	{ 107.0, true, 0 }, { 107.5, false, 1 }, { 109.9, false, 2 },
	/* A new window: the count starts again (and the two are said). */
	{ 110.0, true, 0 }, { 110.1, true, 0 },
	/* A clock that went back opens a window too. */
	{ 50.0, true, 0 },
};

static void
test_limit(void **state)
{
	struct log_limit l = { 0 };

	log_init(LOG_LEVEL_ERROR);	/* the summary line stays quiet */
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		char name[32];

		snprintf(name, sizeof(name), "call %zu at %.1f", i + 1,
		    steps[i].now);
		tcase = name;
		CHECK(log_limit(&l, steps[i].now, "lines") == steps[i].allowed);
		CHECK_INT(l.suppressed, steps[i].suppressed);
	}
	t_done();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_limit),
	};

	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
