/*
 * The parts of pginval check --connect: check.c (PostgreSQL) and
 * check_redis.c (Redis). Not for other modules: they see only check.h.
 */
#ifndef PGINVAL_CHECK_INT_H
#define PGINVAL_CHECK_INT_H

#include <stdio.h>

#include "core/config.h"

/* Prints "problem: ..." with its arguments escaped; returns 1. */
int check_problem(FILE *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prints "ok: ..." with its arguments escaped. */
void check_ok(FILE *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prints a line that heads the findings below it, escaped. */
void check_heading(FILE *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The Redis side: [redis], then each [target NAME] of pginval apply;
 * returns the number of problems found. */
int check_redis(const struct config *cfg, FILE *out);

#endif
