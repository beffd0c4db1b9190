/*
 * Soft checks for table-driven cmocka tests: a test walks its table of
 * cases, every failing check is reported with the case's name (tcase),
 * and t_done() then fails the test once if any did. Shared by every unit
 * test; include it after <cmocka.h>.
 */
#ifndef PGINVAL_TCHECK_H
#define PGINVAL_TCHECK_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *tcase = "";
static int tfails;

static inline void t_fail_at(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static inline void
t_fail_at(const char *file, int line, const char *fmt, ...)
{
	char msg[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	print_error("%s:%d: case \"%s\": %s\n", file, line, tcase, msg);
	tfails++;
}

#define t_fail(line, ...) t_fail_at(__FILE__, line, __VA_ARGS__)

/* Ends a table test: fails it if any check failed. */
static inline void
t_done(void)
{
	int n = tfails;

	tfails = 0;
	tcase = "";
	if (n > 0)
		fail_msg("%d check(s) failed", n);
}

/* s[0..n) quoted C-style, shortened, for messages. */
static inline const char *
t_quote(char *out, size_t size, const char *s, size_t n)
{
	size_t o = 0;

	if (s == NULL)
		return "NULL";
	out[o++] = '"';
	for (size_t i = 0; i < n && o + 8 < size; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\')
			o += (size_t)snprintf(out + o, size - o, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			o += (size_t)snprintf(out + o, size - o, "\\x%02x", c);
		else
			out[o++] = (char)c;
	}
	out[o++] = '"';
	out[o] = '\0';
	return out;
}

static inline void
t_check_mem_at(const char *file, int line, const char *what, const char *got,
    size_t glen, const char *want, size_t wlen)
{
	char g[256], w[256];

	if (got == NULL && want == NULL)
		return;
	if (got != NULL && want != NULL && glen == wlen &&
	    memcmp(got, want, glen) == 0)
		return;
	t_fail_at(file, line, "%s is %s (%zu bytes), want %s (%zu bytes)", what,
	    t_quote(g, sizeof(g), got, glen), glen,
	    t_quote(w, sizeof(w), want, wlen), wlen);
}

#define t_check_mem(line, ...) t_check_mem_at(__FILE__, line, __VA_ARGS__)

#define CHECK(cond) do { \
	if (!(cond)) \
		t_fail(__LINE__, "%s", #cond); \
} while (0)
#define CHECK_INT(got, want) do { \
	long long g_ = (long long)(got), w_ = (long long)(want); \
	if (g_ != w_) \
		t_fail(__LINE__, "%s is %lld, want %lld", #got, g_, w_); \
} while (0)
#define CHECK_STR(got, want) do { \
	const char *g_ = (got), *w_ = (want); \
	t_check_mem(__LINE__, #got, g_, g_ ? strlen(g_) : 0, w_, \
	    w_ ? strlen(w_) : 0); \
} while (0)

#endif
