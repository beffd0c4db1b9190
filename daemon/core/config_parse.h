/*
 * The parser's state, shared by config.c and the files that read parts
 * of the configuration for it (config_sections.c, config_secret.c). Not
 * for other modules: they see only config.h.
 */
#ifndef PGINVAL_CONFIG_PARSE_H
#define PGINVAL_CONFIG_PARSE_H

#include <stdbool.h>
#include <stdio.h>

#include "lib/buf.h"
#include "core/config.h"

struct parse_ctx {
	struct config *cfg;
	const char *name;
	FILE *f;
	int line;		/* of the line inih is handling */
	bool at_line_start;
	struct buf raw;		/* that line, which inih may read in parts */
	bool raw_checked;	/* raw has been through config_check_line() */
	bool syntax_errors;	/* config_check_line() reported some */
	char *section;		/* the current section's name, in full */
	int section_line;	/* of its header */
	int read_errno;		/* reading the stream failed */
	bool *seen;		/* per setting of the table: given */
	int redis_url_line;	/* 0: the default */
	struct buf errors;
	int nerrors;
};

/* Adds "NAME:LINE: reason" (line 0: "NAME: reason") to the errors. */
void config_error(struct parse_ctx *ctx, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A number, or a duration with "s" or "ms"; -1 when it is neither. */
int config_number(const char *value, double *out);

/* A setting of a [table NAME] or [target NAME] section; section_rest is
 * what follows "table" or "target" in the header. Errors are collected. */
int config_table_key(struct parse_ctx *ctx, const char *section_rest,
    const char *name, const char *value);
int config_target_key(struct parse_ctx *ctx, const char *section_rest,
    const char *name, const char *value);
/* Parses each target's url and arrangement, once the file is read. */
void config_check_targets(struct parse_ctx *ctx);
/* Refuses templates whose sweeps would reach other applications' keys. */
void config_check_sweeps(struct parse_ctx *ctx, const struct table_rule *t);
/* Catches a bad conninfo now rather than at every reconnect. */
void config_check_conninfo(struct parse_ctx *ctx, const char *section,
    const char *conninfo);
/* Reads the password files and the environment, once the file is read. */
void config_secrets(struct parse_ctx *ctx);

#endif
