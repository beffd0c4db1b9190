/*
 * Pieces of the Prometheus text exposition format (version 0.0.4), with
 * which every /metrics page of the binary is written. Pure; knows nothing
 * of pginval.
 */
#include "lib/prom.h"

#include <stdio.h>

void
prom_head(struct buf *out, const char *name, const char *type,
    const char *help)
{
	buf_adds(out, "# HELP ");
	buf_adds(out, name);
	buf_addc(out, ' ');
	buf_adds(out, help);
	buf_adds(out, "\n# TYPE ");
	buf_adds(out, name);
	buf_addc(out, ' ');
	buf_adds(out, type);
	buf_addc(out, '\n');
}

void
prom_label(struct buf *out, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\' || *v == '"')
			buf_addc(out, '\\');
		if (*v == '\n')
			buf_adds(out, "\\n");
		else
			buf_addc(out, *v);
	}
}

void
prom_sample(struct buf *out, const char *name, const char *labels,
    double v)
{
	char num[64];

	buf_adds(out, name);
	if (labels != NULL && labels[0] != '\0') {
		buf_addc(out, '{');
		buf_adds(out, labels);
		buf_addc(out, '}');
	}
	snprintf(num, sizeof(num), " %.17g\n", v);
	buf_adds(out, num);
}

void
prom_counter(struct buf *out, const char *name, const char *help,
    unsigned long v)
{
	prom_head(out, name, "counter", help);
	prom_sample(out, name, NULL, (double)v);
}

void
prom_hist(struct buf *out, const char *name, const char *help,
    const struct hist *h)
{
	unsigned long cum = 0;
	char series[128], le[64];

	prom_head(out, name, "histogram", help);
	snprintf(series, sizeof(series), "%s_bucket", name);
	for (size_t i = 0; i < HIST_BUCKETS; i++) {
		cum += h->buckets[i];
		snprintf(le, sizeof(le), "le=\"%g\"", hist_bounds[i]);
		prom_sample(out, series, le, (double)cum);
	}
	prom_sample(out, series, "le=\"+Inf\"", (double)h->count);
	snprintf(series, sizeof(series), "%s_sum", name);
	prom_sample(out, series, NULL, h->sum);
	snprintf(series, sizeof(series), "%s_count", name);
	prom_sample(out, series, NULL, (double)h->count);
}
