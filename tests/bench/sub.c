/*
 * Benchmark subscriber: SUBSCRIBEs to one Redis channel over a plain
 * socket (a minimal RESP reader, no allocation per message) and counts what
 * arrives, so that it stays far from being the bottleneck.
 *
 *   sub HOST PORT CHANNEL [-n COUNT] [-i IDLE_S] [-t TIMEOUT_S] [-l]
 *
 * Prints "ready" once Redis has confirmed the subscription, then, when
 * COUNT row changes (resets excluded) have arrived, or IDLE_S seconds
 * passed without a message after the first, or TIMEOUT_S seconds in all,
 * or on SIGTERM, one line of JSON:
 *
 *   msgs, resets   messages received; those with "op":"reset" apart
 *   events         row changes they carry: the entries of a message's
 *                  "rows" array (pginval merges changes that wait for
 *                  Redis), else one per message
 *   bytes          payload bytes, resets included
 *   keys           entries of the "keys" arrays (pginval's messages)
 *   first_us, last_us   CLOCK_REALTIME of the first and last receipt
 *   cpu_s          this process's user + system CPU time
 *   lat            with -l: receipt time minus the message's "ts", in
 *                  microseconds, one sample per row change: n, p50, p99,
 *                  p999, max. A merged message carries its oldest change's
 *                  "ts", so its later changes count pessimistically.
 *
 * A receipt time is taken once per read(): every message in the chunk
 * shares it.
 */
#define _GNU_SOURCE	/* memmem */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static struct {
	uint64_t msgs, events, resets, bytes, keys;
	int64_t first_us, last_us;
	bool latency;
	int64_t *lat;
	size_t nlat, caplat;
	bool subscribed;
} st;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
die(const char *what)
{
	fprintf(stderr, "sub: %s: %s\n", what, errno ? strerror(errno) : "");
	exit(1);
}

/* One RESP element at p (of n bytes): a bulk string or an integer. Returns
 * its length in the buffer, 0 if incomplete, -1 if malformed. */
static long
resp_elem(const char *p, size_t n, const char **val, size_t *len)
{
	const char *eol = memchr(p, '\r', n);
	long hdr, blen;

	if (eol == NULL || (size_t)(eol - p) + 2 > n)
		return 0;
	hdr = eol - p + 2;
	if (p[0] == ':') {
		*val = p + 1;
		*len = (size_t)(eol - p - 1);
		return hdr;
	}
	if (p[0] != '$')
		return -1;
	blen = strtol(p + 1, NULL, 10);
	if (blen < 0)
		return -1;
	if ((size_t)(hdr + blen + 2) > n)
		return 0;
	*val = p + hdr;
	*len = (size_t)blen;
	return hdr + blen + 2;
}

/* Counts the elements of the JSON array of objects that starts after
 * `"rows":[`. */
static uint64_t
count_rows(const char *p, const char *end)
{
	uint64_t n = 0;
	int depth = 0;

	for (; p < end; p++) {
		if (*p == '"') {
			for (p++; p < end && *p != '"'; p++)
				if (*p == '\\')
					p++;
		} else if (*p == '{' || *p == '[') {
			if (depth++ == 0)
				n++;
		} else if (*p == '}' || *p == ']') {
			if (--depth < 0)
				break;
		}
	}
	return n;
}

/* Counts the strings of the JSON array that starts after `"keys":[`. */
static uint64_t
count_keys(const char *p, const char *end)
{
	uint64_t k = 0;

	while (p < end && *p != ']') {
		if (*p == '"') {
			k++;
			for (p++; p < end && *p != '"'; p++)
				if (*p == '\\')
					p++;
		}
		p++;
	}
	return k;
}

static void
on_message(const char *pl, size_t len, int64_t at)
{
	const char *end = pl + len, *f;
	uint64_t rows = 1;

	st.bytes += len;
	if (memmem(pl, len, "\"op\":\"reset\"", 12) != NULL) {
		st.resets++;
		return;
	}
	if (st.msgs++ == 0)
		st.first_us = at;
	st.last_us = at;
	if ((f = memmem(pl, len, "\"keys\":[", 8)) != NULL)
		st.keys += count_keys(f + 8, end);
	if ((f = memmem(pl, len, "\"rows\":[", 8)) != NULL)
		rows = count_rows(f + 8, end);
	st.events += rows;
	if (st.latency && (f = memmem(pl, len, "\"ts\":", 5)) != NULL) {
		int64_t lat = at - strtoll(f + 5, NULL, 10);

		while (st.nlat + rows > st.caplat) {
			st.caplat = st.caplat ? 2 * st.caplat : 65536;
			st.lat = realloc(st.lat, st.caplat * sizeof(*st.lat));
			if (st.lat == NULL)
				die("out of memory");
		}
		for (uint64_t i = 0; i < rows; i++)
			st.lat[st.nlat++] = lat;
	}
}

/* Consumes the complete replies in buf; returns how many bytes. */
static size_t
parse(const char *buf, size_t n, int64_t at)
{
	size_t pos = 0;

	while (pos < n) {
		const char *p = buf + pos, *eol = memchr(p, '\r', n - pos);
		const char *v[3];
		size_t vl[3], off;
		long count, e;

		if (eol == NULL || (size_t)(eol - buf) + 2 > n)
			break;
		if (*p != '*' || (count = strtol(p + 1, NULL, 10)) != 3) {
			errno = 0;
			die("unexpected reply from Redis");
		}
		off = (size_t)(eol - p) + 2;
		for (int i = 0; i < 3; i++) {
			e = resp_elem(p + off, n - pos - off, &v[i], &vl[i]);
			if (e < 0) {
				errno = 0;
				die("malformed reply from Redis");
			}
			if (e == 0)
				return pos;
			off += (size_t)e;
		}
		if (vl[0] == 7 && memcmp(v[0], "message", 7) == 0)
			on_message(v[2], vl[2], at);
		else if (vl[0] == 9 && memcmp(v[0], "subscribe", 9) == 0)
			st.subscribed = true;
		pos += off;
	}
	return pos;
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of the sorted latencies. */
static int64_t
pct(double q)
{
	size_t r = (size_t)(q * (double)st.nlat + 0.999999);

	return st.lat[r == 0 ? 0 : r - 1];
}

int
main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	uint64_t want = 0;
	double idle = 0, timeout = 0;
	size_t cap = 1 << 20, len = 0;
	char *buf = malloc(cap), cmd[256];
	int fd, one = 1, opt;
	int64_t started;
	struct rusage ru;

	if (argc < 4) {
		fprintf(stderr, "usage: sub HOST PORT CHANNEL [-n COUNT] "
		    "[-i IDLE_S] [-t TIMEOUT_S] [-l]\n");
		return 2;
	}
	optind = 4;
	while ((opt = getopt(argc, argv, "n:i:t:l")) != -1) {
		switch (opt) {
		case 'n': want = strtoull(optarg, NULL, 10); break;
		case 'i': idle = atof(optarg); break;
		case 't': timeout = atof(optarg); break;
		case 'l': st.latency = true; break;
		default: return 2;
		}
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	sa.sin_port = htons((uint16_t)atoi(argv[2]));
	if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1)
		die("HOST must be an IPv4 address");
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	snprintf(cmd, sizeof(cmd), "*2\r\n$9\r\nSUBSCRIBE\r\n$%zu\r\n%s\r\n",
	    strlen(argv[3]), argv[3]);
	if (write(fd, cmd, strlen(cmd)) != (ssize_t)strlen(cmd))
		die("write");
	started = now_us();
	while (!stop) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int64_t now = now_us(), wait_ms = 200;
		ssize_t r;
		size_t used;

		if (want > 0 && st.events >= want)
			break;
		if (timeout > 0 && now - started >= (int64_t)(timeout * 1e6))
			break;
		if (idle > 0 && st.msgs > 0 &&
		    now - st.last_us >= (int64_t)(idle * 1e6))
			break;
		if (poll(&pfd, 1, (int)wait_ms) <= 0)
			continue;
		if (len == cap && (buf = realloc(buf, cap *= 2)) == NULL)
			die("out of memory");
		r = read(fd, buf + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("read");
		len += (size_t)r;
		used = parse(buf, len, now_us());
		memmove(buf, buf + used, len - used);
		len -= used;
		if (st.subscribed) {
			st.subscribed = false;
			printf("ready\n");
			fflush(stdout);
		}
	}
	getrusage(RUSAGE_SELF, &ru);
	printf("{\"msgs\":%" PRIu64 ",\"events\":%" PRIu64 ",\"resets\":%"
	    PRIu64 ",\"bytes\":%" PRIu64 ",\"keys\":%" PRIu64 ",\"first_us\":%"
	    PRId64 ",\"last_us\":%" PRId64 ",\"cpu_s\":%.3f", st.msgs,
	    st.events, st.resets, st.bytes, st.keys,
	    st.first_us, st.last_us,
	    ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
	if (st.latency && st.nlat > 0) {
		qsort(st.lat, st.nlat, sizeof(*st.lat), cmp_i64);
		printf(",\"lat\":{\"n\":%zu,\"p50\":%" PRId64 ",\"p99\":%" PRId64
		    ",\"p999\":%" PRId64 ",\"max\":%" PRId64 "}", st.nlat,
		    pct(0.50), pct(0.99), pct(0.999), st.lat[st.nlat - 1]);
	}
	printf("}\n");
	return 0;
}
