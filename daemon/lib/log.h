/*
 * Logging to stderr, with levels. When stderr is connected to the systemd
 * journal (JOURNAL_STREAM names it), each line starts with a "<N>" priority
 * prefix and carries no timestamp of its own.
 */
#ifndef PGINVAL_LOG_H
#define PGINVAL_LOG_H

#include <stdbool.h>

enum log_level {
	LOG_LEVEL_ERROR = 3,
	LOG_LEVEL_WARN = 4,
	LOG_LEVEL_INFO = 6,
	LOG_LEVEL_DEBUG = 7,
};

/* Reads JOURNAL_STREAM once; call before the first message. */
void log_init(enum log_level level);
void log_set_level(enum log_level level);
/* Parses "error", "warn", "info" or "debug"; returns -1 when unknown. */
int log_level_parse(const char *name, enum log_level *out);
bool log_enabled(enum log_level level);

#define LOG_PRINTF(a, b) __attribute__((format(printf, a, b)))

void log_debug(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_info(const char *fmt, ...) LOG_PRINTF(1, 2);
/* Appends ": strerror(errno)". */
void log_warn(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_warnx(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_error(const char *fmt, ...) LOG_PRINTF(1, 2);
/* Start-up only: logs and exits with status 1. */
void log_fatal(const char *fmt, ...) LOG_PRINTF(1, 2) __attribute__((noreturn));

/*
 * A rate limit for one kind of line that an outside party can make
 * frequent (bad payloads, floods of resets): at most LOG_LIMIT_LINES per
 * LOG_LIMIT_WINDOW seconds. Zero-initialised.
 */
#define LOG_LIMIT_LINES 10
#define LOG_LIMIT_WINDOW 10.0

struct log_limit {
	double window;		/* start of the current window */
	unsigned lines;		/* logged in it */
	unsigned long suppressed;	/* not logged in it */
};

/*
 * Whether a line may be logged at time now (any clock in seconds). When a
 * window opens after lines were suppressed, says first (at warning level)
 * how many "<what>" were not logged.
 */
bool log_limit(struct log_limit *l, double now, const char *what);

#endif
