/*
 * pginval check --connect: goes beyond the syntax of the file. It connects
 * to both servers (blocking: this is a command, not the daemon) and checks
 * that the SQL API is installed at the expected version and that every
 * [table] is watched, on the right channel, with the columns its key
 * templates need. Each problem is printed with the command that fixes it.
 */
#ifndef PGINVAL_CHECK_H
#define PGINVAL_CHECK_H

#include <stdio.h>

#include "core/config.h"

#define CHECK_SQL_VERSION "3"

/* Prints findings to out; returns the number of problems found. */
int check_connect(const struct config *cfg, FILE *out);

#endif
