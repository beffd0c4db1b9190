/*
 * pginval tail. Prints, per message: local time, lag from the row change,
 * op, table and keys. Resets and sequence gaps stand out (in colour on a
 * terminal), and Ctrl-C prints a summary. --json passes messages through
 * unchanged for scripts. It subscribes through the daemon's subscriber
 * link (redis_psub.h), so it follows a Redis Cluster the way pginval
 * apply does: SSUBSCRIBE at the node that serves the channel with
 * cluster = on, following the slot when it moves, and SUBSCRIBE
 * otherwise. Every subscription after the first is shown as a gap.
 *
 * Anyone who can write a row, or PUBLISH on the channel, chooses bytes
 * that end up here: every field is printed through esc.h, so no escape
 * sequence reaches the operator's terminal.
 */
#include "tail.h"
#include "core/config.h"
#include "lib/esc.h"
#include "lib/log.h"
#include "core/message.h"
#include "lib/redis_psub.h"
#include "lib/redis_sentinel.h"
#include "lib/xalloc.h"

#include <ev.h>
#include <fnmatch.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

struct tail {
	bool json, color;
	bool connected;		/* subscribed once already */
	const char *table, *key, *channel;
	struct redis_psub *link;
	struct redis_sentinel *sentinel;	/* NULL without sentinels */
	struct message_seq seq;	/* the gap rules, as apply keeps them */
	struct message msg;	/* the last one read */
	unsigned long messages, shown, resets, gaps;
};

void
tail_usage(FILE *f)
{
	fprintf(f,
	    "usage: pginval tail [-c FILE] [--url URL] [--password-file FILE]\n"
	    "                    [--channel NAME] [--json] [--table NAME] [--key GLOB]\n"
	    "\n"
	    "  -c, --config FILE   take [redis] url, password, channel and\n"
	    "                      cluster from FILE\n"
	    "  -u, --url URL       redis://[user:pass@]host:port/db or unix:/path\n"
	    "                      (default redis://127.0.0.1:6379/0)\n"
	    "  -P, --password-file FILE\n"
	    "                      the Redis password is FILE's first line\n"
	    "                      (else PGINVAL_REDIS_PASSWORD, else the URL's)\n"
	    "  -C, --channel NAME  channel (default pginval)\n"
	    "  -j, --json          print messages unchanged, one per line\n"
	    "  -t, --table NAME    only messages about NAME (and global resets)\n"
	    "  -k, --key GLOB      only messages with a key matching GLOB\n");
}

static const char *
tail_paint(const struct tail *t, const char *code)
{
	return t->color ? code : "";
}

/* Prints s escaped, padded with spaces to width columns (counted as bytes,
 * as printf's %-Ns does). */
static void
tail_field(const char *s, size_t len, int width)
{
	struct buf b = { 0 };

	esc_buf(&b, s, len);
	for (size_t i = b.len; (int)i < width; i++)
		buf_addc(&b, ' ');
	if (b.len > 0)
		fwrite(b.data, 1, b.len, stdout);
	buf_free(&b);
}

static void
tail_str(const char *s, int width)
{
	tail_field(s, strlen(s), width);
}

/*
 * --json: the message as it came, on one line, with the control characters
 * a lenient parser let through made harmless without changing what the
 * JSON says: inside a string each becomes its \u00XX escape, between
 * tokens (where it can only be white space) a space. -1 when the text is
 * not UTF-8, which JSON must be.
 */
static int
tail_json_line(struct buf *b, const char *text, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)text;
	bool in_str = false, escaped = false;

	for (size_t i = 0; i < len;) {
		unsigned cp;
		size_t n = esc_utf8_char(u + i, len - i, &cp);

		if (n == 0)
			return -1;
		if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) {
			if (in_str) {
				buf_adds(b, "\\u00");
				buf_addc(b, hex[cp >> 4]);
				buf_addc(b, hex[cp & 15]);
			} else {
				buf_addc(b, ' ');
			}
			escaped = false;
		} else {
			if (in_str && escaped)
				escaped = false;
			else if (in_str && cp == '\\')
				escaped = true;
			else if (cp == '"')
				in_str = !in_str;
			buf_add(b, text + i, n);
		}
		i += n;
	}
	return 0;
}

static bool
tail_wanted(const struct tail *t, const struct message *m)
{
	if (t->table != NULL && m->table != NULL &&
	    strcmp(m->table, t->table) != 0)
		return false;
	if (t->key == NULL)
		return true;
	for (size_t i = 0; i < m->nkeys; i++)
		if (fnmatch(t->key, m->keys[i].s, 0) == 0)
			return true;
	return false;
}

static void
tail_print(struct tail *t, const char *text, size_t len)
{
	struct message *m = &t->msg;
	struct buf line = { 0 };
	struct timeval now;
	struct tm tm;
	char clock[16], err[64];
	bool reset;

	t->messages++;
	if (message_parse(m, text, len, err, sizeof(err)) == -1 ||
	    (t->json && tail_json_line(&line, text, len) == -1)) {
		printf("%s(not JSON) ", tail_paint(t, "\033[31m"));
		tail_field(text, len, 0);
		printf("%s\n", tail_paint(t, "\033[0m"));
		goto done;
	}
	reset = m->op != NULL && (strcmp(m->op, "reset") == 0 ||
	    strcmp(m->op, "truncate") == 0);
	if (reset)
		t->resets++;

	if (message_has_seq(m)) {
		uint64_t expected = t->seq.last + 1;
		enum message_gap gap = message_seq_check(&t->seq, m->epoch,
		    m->seq);

		if (gap != MESSAGE_GAP_NONE) {
			t->gaps++;
			if (!t->json)
				printf("%s!! gap: expected seq %llu, got %llu%s\n",
				    tail_paint(t, "\033[1;31m"),
				    (unsigned long long)(gap == MESSAGE_GAP_EPOCH ?
				    1 : expected), (unsigned long long)m->seq,
				    tail_paint(t, "\033[0m"));
		}
	}
	if (!tail_wanted(t, m))
		goto done;
	t->shown++;
	if (t->json) {
		buf_addc(&line, '\n');
		fwrite(line.data, 1, line.len, stdout);
		goto done;
	}
	gettimeofday(&now, NULL);
	localtime_r(&now.tv_sec, &tm);
	strftime(clock, sizeof(clock), "%H:%M:%S", &tm);
	printf("%s.%03ld ", clock, (long)now.tv_usec / 1000);
	if (m->has_ts) {
		double lag = ((double)now.tv_sec * 1e6 + now.tv_usec -
		    (double)m->ts) / 1000.0;
		printf("%8.1fms ", lag);
	} else {
		printf("%10s ", "-");
	}
	printf("%s", tail_paint(t, reset ? "\033[1;33m" : "\033[36m"));
	tail_str(m->op ? m->op : "?", 8);
	printf("%s ", tail_paint(t, "\033[0m"));
	tail_str(m->table ? m->table : "(all tables)", 24);
	for (size_t i = 0; i < m->nkeys; i++) {
		putchar(' ');
		tail_field(m->keys[i].s, m->keys[i].len, 0);
	}
	if (m->reason != NULL) {
		printf(" %s(", tail_paint(t, "\033[33m"));
		tail_str(m->reason, 0);
		printf(")%s", tail_paint(t, "\033[0m"));
	}
	printf("\n");
done:
	fflush(stdout);
	buf_free(&line);
}

static void
tail_link_cb(void *arg, enum redis_psub_event ev, const char *payload,
    size_t len)
{
	struct tail *t = arg;

	if (ev == REDIS_PSUB_EVENT_MESSAGE) {
		tail_print(t, payload, len);
		return;
	}
	if (ev != REDIS_PSUB_EVENT_SUBSCRIBED)
		return;	/* LOST: the link logs why, and subscribes again */
	if (!t->json)
		fprintf(stderr, "pginval tail: subscribed to \"%s\" on %s\n",
		    t->channel, redis_psub_where(t->link));
	/* Messages published while away are gone: that is a gap, whatever
	 * the next seq says. */
	if (t->connected) {
		t->gaps++;
		if (!t->json)
			printf("%s!! gap: resubscribed, messages may have been "
			    "missed%s\n", tail_paint(t, "\033[1;31m"),
			    tail_paint(t, "\033[0m"));
		fflush(stdout);
	}
	t->connected = true;
	message_seq_forget(&t->seq);
}

/* With sentinels: the master they name, and a move when it switches. */
static int
tail_locate(void *arg, char *host, size_t hostlen, int *port)
{
	struct tail *t = arg;

	return redis_sentinel_locate(t->sentinel, host, hostlen, port);
}

static void
tail_switched(void *arg, const char *host, int port)
{
	struct tail *t = arg;

	redis_psub_reconnect(t->link, "the master switched");
}

static void
tail_on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

static int
tail_loop(struct tail *t, const struct config *cfg)
{
	struct ev_loop *loop = ev_default_loop(0);
	struct redis_psub_opts po = {
		.name = "tail", .addr = &cfg->redis, .channel = t->channel,
		.client_name = "pginval-tail",
		.connect_timeout = cfg->redis_connect_timeout > 0 ?
		    cfg->redis_connect_timeout : 5,
		.keepalive = cfg->health_interval > 0 ? cfg->health_interval : 30,
		.reconnect_min = 1, .reconnect_max = 5,
	};
	ev_signal sigint, sigterm;

	/* Lost links and refusals, as warnings; tail says the rest. */
	log_set_level(LOG_LEVEL_WARN);
	ev_signal_init(&sigint, tail_on_signal, SIGINT);
	ev_signal_start(loop, &sigint);
	ev_signal_init(&sigterm, tail_on_signal, SIGTERM);
	ev_signal_start(loop, &sigterm);
	if (cfg->redis.nsentinels > 0) {
		struct redis_sentinel_opts so = {
			.name = "tail", .addr = &cfg->redis,
			.timeout = po.connect_timeout,
			.reconnect_min = 1, .reconnect_max = 5,
		};

		t->sentinel = redis_sentinel_new(loop, &so, t);
		po.locate = tail_locate;
		po.locate_arg = t;
		redis_sentinel_follow(t->sentinel, tail_switched);
	}
	t->link = redis_psub_new(loop, &po, tail_link_cb, t);
	redis_psub_start(t->link);
	ev_run(loop, 0);
	redis_psub_free(t->link);
	t->link = NULL;
	redis_sentinel_free(t->sentinel);
	t->sentinel = NULL;
	ev_signal_stop(loop, &sigint);
	ev_signal_stop(loop, &sigterm);
	if (!t->json)
		fprintf(stderr, "\n%lu messages (%lu shown), %lu resets or "
		    "truncates, %lu gaps\n", t->messages, t->shown, t->resets,
		    t->gaps);
	return 0;
}

int
tail_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "url", required_argument, NULL, 'u' },
		{ "password-file", required_argument, NULL, 'P' },
		{ "channel", required_argument, NULL, 'C' },
		{ "json", no_argument, NULL, 'j' },
		{ "table", required_argument, NULL, 't' },
		{ "key", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct tail t = { 0 };
	struct config *cfg = NULL, dflt = { 0 };
	const char *url = NULL, *channel = NULL, *path = NULL, *pwfile = NULL;
	char err[256], *errors = NULL;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "c:u:P:C:jt:k:hV", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 'u': url = optarg; break;
		case 'P': pwfile = optarg; break;
		case 'C': channel = optarg; break;
		case 'j': t.json = true; break;
		case 't': t.table = optarg; break;
		case 'k': t.key = optarg; break;
		case 'h': tail_usage(stdout); return 0;
		case 'V': printf("pginval %s\n", PGINVAL_VERSION); return 0;
		default: tail_usage(stderr); return 2;
		}
	}
	if (path != NULL && config_load(path, &cfg, &errors) == -1) {
		fprintf(stderr, "%s\n", errors);
		free(errors);
		return 1;
	}
	if (cfg == NULL)
		cfg = &dflt;
	if (url != NULL || cfg == &dflt) {
		if (config_parse_redis_url(cfg, url ? url :
		    "redis://127.0.0.1:6379/0", err, sizeof(err)) == -1) {
			fprintf(stderr, "pginval tail: %s\n", err);
			rc = 2;
			goto done;
		}
	}
	/* The daemon's order: password_file (--password-file first), password,
	 * PGINVAL_REDIS_PASSWORD, the URL; never the command line alone,
	 * which every user can read in ps. */
	if (pwfile != NULL) {
		free(cfg->redis_password_file);
		cfg->redis_password_file = xstrdup(pwfile);
	}
	if (config_redis_password(cfg, err, sizeof(err)) == -1) {
		fprintf(stderr, "pginval tail: %s: %s\n", pwfile ?
		    "--password-file" : "[redis] password_file", err);
		rc = 1;
		goto done;
	}
	if (channel == NULL)
		channel = cfg->redis_channel ? cfg->redis_channel : "pginval";
	t.channel = channel;
	t.color = !t.json && isatty(STDOUT_FILENO) && getenv("NO_COLOR") == NULL;

	signal(SIGPIPE, SIG_IGN);
	rc = tail_loop(&t, cfg);
	message_free(&t.msg);
done:
	if (cfg == &dflt) {
		redis_addr_free(&dflt.redis);
		free(dflt.redis_password_file);
	} else {
		config_free(cfg);
	}
	return rc;
}
