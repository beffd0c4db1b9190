/*
 * Writing the Prometheus text exposition format (version 0.0.4). Pure;
 * knows nothing of pginval.
 */
#ifndef PGINVAL_PROM_H
#define PGINVAL_PROM_H

#include "lib/buf.h"
#include "lib/hist.h"

/* Names and labels are written as given: labels is the text between the
 * braces, already escaped (NULL or "": none). */
/* "# HELP name help" and "# TYPE name type". */
void prom_head(struct buf *out, const char *name, const char *type,
    const char *help);
/* "name{labels} v". */
void prom_sample(struct buf *out, const char *name, const char *labels,
    double v);
/* A label's value: backslash, quote and newline are escaped. */
void prom_label(struct buf *out, const char *v);
/* A counter: its head and its one sample. */
void prom_counter(struct buf *out, const char *name, const char *help,
    unsigned long v);
/* The histogram h: name_bucket{le=...}, name_sum, name_count. */
void prom_hist(struct buf *out, const char *name, const char *help,
    const struct hist *h);

#endif
