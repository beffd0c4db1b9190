/*
 * Logging: one line per message on stderr. Messages never contain secrets;
 * callers log host names and ports, never conninfo strings or URLs.
 *
 * Messages carry data from outside (payloads, row values, table and
 * column names, server errors), so every message is escaped here (esc.h):
 * a newline in a payload cannot start a forged line, nor forge a "<N>"
 * priority for the journal, and no terminal control reaches the reader.
 */
#include "lib/log.h"
#include "lib/esc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static enum log_level log_threshold = LOG_LEVEL_INFO;
static bool log_journal;

void
log_init(enum log_level level)
{
	const char *js = getenv("JOURNAL_STREAM");
	struct stat st;
	unsigned long dev, ino;

	log_threshold = level;
	/* Only when stderr really is the stream systemd named. */
	if (js != NULL && sscanf(js, "%lu:%lu", &dev, &ino) == 2 &&
	    fstat(STDERR_FILENO, &st) == 0 &&
	    (unsigned long)st.st_dev == dev && (unsigned long)st.st_ino == ino)
		log_journal = true;
}

void
log_set_level(enum log_level level)
{
	log_threshold = level;
}

int
log_level_parse(const char *name, enum log_level *out)
{
	static const struct { const char *name; enum log_level level; } names[] = {
		{ "error", LOG_LEVEL_ERROR }, { "warn", LOG_LEVEL_WARN },
		{ "warning", LOG_LEVEL_WARN }, { "info", LOG_LEVEL_INFO },
		{ "debug", LOG_LEVEL_DEBUG },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(name, names[i].name) == 0) {
			*out = names[i].level;
			return 0;
		}
	return -1;
}

bool
log_enabled(enum log_level level)
{
	return level <= log_threshold;
}

static void log_vwrite(enum log_level level, int errnum, const char *fmt,
    va_list ap) __attribute__((format(printf, 3, 0)));

static void
log_vwrite(enum log_level level, int errnum, const char *fmt, va_list ap)
{
	static const char *tags[] = { [LOG_LEVEL_ERROR] = "error",
	    [LOG_LEVEL_WARN] = "warning", [LOG_LEVEL_INFO] = "info",
	    [LOG_LEVEL_DEBUG] = "debug" };
	char raw[2048], msg[sizeof(raw) * ESC_MAX_RATIO + 16];
	size_t len, used, out;
	int n;

	if (!log_enabled(level))
		return;
	n = vsnprintf(raw, sizeof(raw), fmt, ap);
	if (n < 0)
		return;
	if (errnum != 0 && (size_t)n < sizeof(raw))
		n += snprintf(raw + n, sizeof(raw) - (size_t)n, ": %s",
		    strerror(errnum));
	len = (size_t)n < sizeof(raw) ? (size_t)n : sizeof(raw) - 1;
	out = esc_str(msg, sizeof(msg), raw, len, &used);
	/* A cut message says so; the cut falls between whole escapes, and a
	 * character cut short by vsnprintf shows as its \xNN bytes. */
	if (used < (size_t)n)
		memcpy(msg + out, "...", 4);
	if (log_journal) {
		fprintf(stderr, "<%d>%s\n", (int)level, msg);
	} else {
		char ts[32];
		struct timespec now;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &now);
		gmtime_r(&now.tv_sec, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
		fprintf(stderr, "%s.%03ldZ pginval[%ld] %s: %s\n", ts,
		    now.tv_nsec / 1000000, (long)getpid(), tags[level], msg);
	}
}

#define LOG_FN(name, level, errnum)		\
void						\
name(const char *fmt, ...)			\
{						\
	int saved = errno;			\
	va_list ap;				\
	va_start(ap, fmt);			\
	log_vwrite(level, errnum, fmt, ap);	\
	va_end(ap);				\
	errno = saved;				\
}

LOG_FN(log_debug, LOG_LEVEL_DEBUG, 0)
LOG_FN(log_info, LOG_LEVEL_INFO, 0)
LOG_FN(log_warn, LOG_LEVEL_WARN, saved)
LOG_FN(log_warnx, LOG_LEVEL_WARN, 0)
LOG_FN(log_error, LOG_LEVEL_ERROR, 0)

void
log_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_ERROR, 0, fmt, ap);
	va_end(ap);
	exit(1);
}

bool
log_limit(struct log_limit *l, double now, const char *what)
{
	if (now - l->window >= LOG_LIMIT_WINDOW || now < l->window) {
		if (l->suppressed > 0)
			log_warnx("%lu more %s in the last %.0fs were not logged",
			    l->suppressed, what, LOG_LIMIT_WINDOW);
		l->window = now;
		l->lines = 0;
		l->suppressed = 0;
	}
	if (l->lines >= LOG_LIMIT_LINES) {
		l->suppressed++;
		return false;
	}
	l->lines++;
	return true;
}
