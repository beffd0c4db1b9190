/*
 * Unit tests for daemon/lib/prom.c and hist.c: the Prometheus text writer
 * that every /metrics page renders with (heads, samples, label escaping,
 * the histogram).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "../../daemon/lib/prom.h"

#include "tcheck.h"

struct label_case {
	const char *name;
	const char *in, *want;
};

static const struct label_case label_cases[] = {
	{ "plain", "public.users", "public.users" },
	{ "empty", "", "" },
	{ "quote", "a\"b", "a\\\"b" },
	{ "backslash", "a\\b", "a\\\\b" },
	{ "newline", "a\nb", "a\\nb" },
	{ "all three", "\"\\\n", "\\\"\\\\\\n" },
	{ "utf-8 passes", "t\xc3\xa9", "t\xc3\xa9" },
};

static void
test_label(void **state)
{
	for (size_t i = 0; i < sizeof(label_cases) / sizeof(label_cases[0]);
	    i++) {
		const struct label_case *c = &label_cases[i];
		struct buf out = { 0 };

		tcase = c->name;
		prom_label(&out, c->in);
		CHECK_STR(out.len ? out.data : "", c->want);
		buf_free(&out);
	}
	t_done();
}

struct sample_case {
	const char *name;
	const char *metric, *labels;
	double v;
	const char *want;
};

static const struct sample_case sample_cases[] = {
	{ "no labels", "m", NULL, 1, "m 1\n" },
	{ "empty labels", "m", "", 2, "m 2\n" },
	{ "labels", "m", "side=\"redis\"", 0, "m{side=\"redis\"} 0\n" },
	{ "fraction", "m_sum", NULL, 0.25, "m_sum 0.25\n" },
	{ "large count", "m", NULL, 4294967296.0, "m 4294967296\n" },
};

static void
test_sample(void **state)
{
	for (size_t i = 0; i < sizeof(sample_cases) / sizeof(sample_cases[0]);
	    i++) {
		const struct sample_case *c = &sample_cases[i];
		struct buf out = { 0 };

		tcase = c->name;
		prom_sample(&out, c->metric, c->labels, c->v);
		CHECK_STR(out.data, c->want);
		buf_free(&out);
	}
	t_done();
}

static void
test_head_and_counter(void **state)
{
	struct buf out = { 0 };

	tcase = "head";
	prom_head(&out, "x_up", "gauge", "1 when up.");
	CHECK_STR(out.data, "# HELP x_up 1 when up.\n# TYPE x_up gauge\n");
	buf_reset(&out);
	tcase = "counter";
	prom_counter(&out, "x_total", "Things.", 7);
	CHECK_STR(out.data, "# HELP x_total Things.\n# TYPE x_total counter\n"
	    "x_total 7\n");
	buf_free(&out);
	t_done();
}

static void
test_lag(void **state)
{
	static const char *const buckets[] = {
		"x_bucket{le=\"0.0005\"} 1\n", "x_bucket{le=\"0.0025\"} 1\n",
		"x_bucket{le=\"0.005\"} 2\n", "x_bucket{le=\"10\"} 2\n",
		"x_bucket{le=\"+Inf\"} 3\n",
	};
	const char *head = "# HELP x Lag.\n# TYPE x histogram\n";
	struct hist h = { 0 };
	struct buf out = { 0 };
	char want[256];

	hist_observe(&h, 0.0001);	/* first bucket */
	hist_observe(&h, 0.003);	/* le 0.005 */
	hist_observe(&h, 100);	/* only +Inf */
	prom_hist(&out, "x", "Lag.", &h);
	tcase = "head";
	CHECK(strncmp(out.data, head, strlen(head)) == 0);
	tcase = "buckets are cumulative";
	for (size_t i = 0; i < sizeof(buckets) / sizeof(buckets[0]); i++)
		CHECK(strstr(out.data, buckets[i]) != NULL);
	CHECK_INT(strstr(out.data, "x_bucket{") - out.data, strlen(head));
	tcase = "sum and count";
	snprintf(want, sizeof(want), "x_sum %.17g\n", 0.0001 + 0.003 + 100.0);
	CHECK(strstr(out.data, want) != NULL);
	CHECK(strstr(out.data, "x_count 3\n") != NULL);
	buf_free(&out);
	t_done();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_label),
		cmocka_unit_test(test_sample),
		cmocka_unit_test(test_head_and_counter),
		cmocka_unit_test(test_lag),
	};

	return cmocka_run_group_tests_name("prom", tests, NULL, NULL);
}
