/*
 * Unit tests for daemon/stats.c: the Prometheus text helpers that both
 * /metrics pages render with (heads, samples, label escaping, the lag
 * histogram), and a few lines of the daemon's page.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "../../daemon/stats.h"

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
		stats_prom_label(&out, c->in);
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
		stats_prom_sample(&out, c->metric, c->labels, c->v);
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
	stats_prom_head(&out, "x_up", "gauge", "1 when up.");
	CHECK_STR(out.data, "# HELP x_up 1 when up.\n# TYPE x_up gauge\n");
	buf_reset(&out);
	tcase = "counter";
	stats_prom_counter(&out, "x_total", "Things.", 7);
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
	struct stats s = { 0 };
	struct buf out = { 0 };
	char want[256];

	stats_observe_lag(&s, 0.0001);	/* first bucket */
	stats_observe_lag(&s, 0.003);	/* le 0.005 */
	stats_observe_lag(&s, 100);	/* only +Inf */
	stats_prom_lag(&out, "x", "Lag.", &s);
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
	stats_free(&s);
	t_done();
}

static void
test_render(void **state)
{
	static const char *const lines[] = {
		"\npginval_info{version=\"0.1.0\",epoch=\"e\\\"1\"} 1\n",
		"\npginval_up{side=\"redis\"} 0\n",
		"\npginval_connection_state{side=\"redis\",state=\"backoff\"} 1\n",
		"\npginval_events_total{table=\"public.users\"} 2\n",
		"\npginval_messages_published_total 5\n",
		"\npginval_messages_replaced_total 2\n",
		"\npginval_outbox_oversized_total 4\n",
		"\npginval_queue_depth 3\n",
		"\npginval_lag_seconds_count 0\n",
	};
	struct stats s = { 0 };
	struct stats_gauges g = {
		.pg_up = 1, .redis_up = 0, .pg_state = "listening",
		.redis_state = "backoff", .queued = 3, .inflight = 1,
		.outbox_backlog = -1, .notify_queue_usage = 0.25,
		.version = "0.1.0", .epoch = "e\"1",
	};
	struct buf out = { 0 };

	s.published = 5;
	s.replaced = 2;
	s.outbox_oversized = 4;
	stats_count_event(&s, "public.users");
	stats_count_event(&s, "public.users");
	stats_render(&s, &g, &out);
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		tcase = lines[i];
		CHECK(strstr(out.data, lines[i]) != NULL);
	}
	tcase = "no outbox backlog outside durable mode";
	CHECK(strstr(out.data, "pginval_outbox_backlog") == NULL);
	tcase = "NOTIFY queue usage";
	CHECK(strstr(out.data, "\n# TYPE pginval_notify_queue_usage gauge\n"
	    "pginval_notify_queue_usage 0.25\n") != NULL);
	tcase = "no NOTIFY queue usage before the first probe";
	buf_reset(&out);
	g.notify_queue_usage = -1;
	stats_render(&s, &g, &out);
	CHECK(strstr(out.data, "pginval_notify_queue_usage") == NULL);
	buf_free(&out);
	stats_free(&s);
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
		cmocka_unit_test(test_render),
	};

	return cmocka_run_group_tests_name("stats", tests, NULL, NULL);
}
