/*
 * Unit tests for daemon/run/stats.c: a few lines of pginval run's /metrics
 * page.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "../../daemon/run/stats.h"

#include "tcheck.h"

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
		cmocka_unit_test(test_render),
	};

	return cmocka_run_group_tests_name("stats", tests, NULL, NULL);
}
