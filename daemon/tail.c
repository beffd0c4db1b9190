/*
 * pginval tail. Prints, per message: local time, lag from the row change,
 * op, table and keys. Resets and sequence gaps stand out (in colour on a
 * terminal), and Ctrl-C prints a summary. --json passes messages through
 * unchanged for scripts. The connection is blocking: this is a client
 * with nothing else to do.
 */
#include "tail.h"
#include "apply_key.h"
#include "config.h"
#include "log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <poll.h>
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
	const char *table, *key;
	struct apply_seq seq;	/* the gap rules, as apply keeps them */
	unsigned long messages, shown, resets, gaps;
};

static volatile sig_atomic_t tail_stop;

static void
tail_on_signal(int sig)
{
	tail_stop = 1;
}

void
tail_usage(FILE *f)
{
	fprintf(f,
	    "usage: pginval tail [-c FILE] [--url URL] [--channel NAME] [--json]\n"
	    "                    [--table NAME] [--key GLOB]\n"
	    "\n"
	    "  -c, --config FILE   take [redis] url and channel from FILE\n"
	    "  -u, --url URL       redis://[user:pass@]host:port/db or unix:/path\n"
	    "                      (default redis://127.0.0.1:6379/0)\n"
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

static bool
tail_wanted(const struct tail *t, const cJSON *msg)
{
	const cJSON *table = cJSON_GetObjectItemCaseSensitive(msg, "table");
	const cJSON *keys = cJSON_GetObjectItemCaseSensitive(msg, "keys");
	const cJSON *k;

	if (t->table != NULL && cJSON_IsString(table) &&
	    strcmp(table->valuestring, t->table) != 0)
		return false;
	if (t->key == NULL)
		return true;
	cJSON_ArrayForEach(k, keys)
		if (cJSON_IsString(k) && fnmatch(t->key, k->valuestring, 0) == 0)
			return true;
	return false;
}

static void
tail_print(struct tail *t, const char *text, size_t len)
{
	cJSON *msg = cJSON_ParseWithLength(text, len);
	const cJSON *seq, *epoch, *op, *table, *keys, *ts, *reason, *k;
	struct timeval now;
	struct tm tm;
	char clock[16];
	bool reset;

	t->messages++;
	if (msg == NULL) {
		printf("%s(not JSON) %.*s%s\n", tail_paint(t, "\033[31m"),
		    (int)len, text, tail_paint(t, "\033[0m"));
		goto done;
	}
	seq = cJSON_GetObjectItemCaseSensitive(msg, "seq");
	epoch = cJSON_GetObjectItemCaseSensitive(msg, "epoch");
	op = cJSON_GetObjectItemCaseSensitive(msg, "op");
	table = cJSON_GetObjectItemCaseSensitive(msg, "table");
	keys = cJSON_GetObjectItemCaseSensitive(msg, "keys");
	ts = cJSON_GetObjectItemCaseSensitive(msg, "ts");
	reason = cJSON_GetObjectItemCaseSensitive(msg, "reason");
	reset = cJSON_IsString(op) && (strcmp(op->valuestring, "reset") == 0 ||
	    strcmp(op->valuestring, "truncate") == 0);
	if (reset)
		t->resets++;

	if (cJSON_IsNumber(seq) && seq->valuedouble >= 1 &&
	    seq->valuedouble <= 9e15 && cJSON_IsString(epoch)) {
		uint64_t expected = t->seq.last + 1;
		enum apply_gap gap = apply_seq_check(&t->seq,
		    epoch->valuestring, (uint64_t)seq->valuedouble);

		if (gap != APPLY_GAP_NONE) {
			t->gaps++;
			if (!t->json)
				printf("%s!! gap: expected seq %llu, got %.0f%s\n",
				    tail_paint(t, "\033[1;31m"),
				    (unsigned long long)(gap == APPLY_GAP_EPOCH ?
				    1 : expected), seq->valuedouble,
				    tail_paint(t, "\033[0m"));
		}
	}
	if (!tail_wanted(t, msg))
		goto done;
	t->shown++;
	if (t->json) {
		printf("%.*s\n", (int)len, text);
		goto done;
	}
	gettimeofday(&now, NULL);
	localtime_r(&now.tv_sec, &tm);
	strftime(clock, sizeof(clock), "%H:%M:%S", &tm);
	printf("%s.%03ld ", clock, (long)now.tv_usec / 1000);
	if (cJSON_IsNumber(ts)) {
		double lag = ((double)now.tv_sec * 1e6 + now.tv_usec -
		    ts->valuedouble) / 1000.0;
		printf("%8.1fms ", lag);
	} else {
		printf("%10s ", "-");
	}
	printf("%s%-8s%s %-24s", tail_paint(t, reset ? "\033[1;33m" : "\033[36m"),
	    cJSON_IsString(op) ? op->valuestring : "?", tail_paint(t, "\033[0m"),
	    cJSON_IsString(table) ? table->valuestring : "(all tables)");
	cJSON_ArrayForEach(k, keys)
		if (cJSON_IsString(k))
			printf(" %s", k->valuestring);
	if (cJSON_IsString(reason))
		printf(" %s(%s)%s", tail_paint(t, "\033[33m"),
		    reason->valuestring, tail_paint(t, "\033[0m"));
	printf("\n");
done:
	fflush(stdout);
	cJSON_Delete(msg);
}

static redisContext *
tail_connect(const struct config *cfg, const char *channel)
{
	struct timeval tv = { 5, 0 };
	redisContext *c;
	redisReply *r;

	c = cfg->redis_host ? redisConnectWithTimeout(cfg->redis_host,
	    cfg->redis_port, tv) : redisConnectUnixWithTimeout(cfg->redis_unix, tv);
	if (c == NULL || c->err) {
		fprintf(stderr, "pginval tail: cannot connect to %s: %s\n",
		    cfg->redis_where, c ? c->errstr : "out of memory");
		redisFree(c);
		return NULL;
	}
	if (cfg->redis_password != NULL) {
		r = cfg->redis_user ? redisCommand(c, "AUTH %s %s", cfg->redis_user,
		    cfg->redis_password) : redisCommand(c, "AUTH %s",
		    cfg->redis_password);
		if (r == NULL || r->type == REDIS_REPLY_ERROR) {
			fprintf(stderr, "pginval tail: AUTH failed on %s: %s\n",
			    cfg->redis_where, r ? r->str : c->errstr);
			freeReplyObject(r);
			redisFree(c);
			return NULL;
		}
		freeReplyObject(r);
	}
	r = redisCommand(c, "SUBSCRIBE %s", channel);
	if (r == NULL || r->type == REDIS_REPLY_ERROR) {
		fprintf(stderr, "pginval tail: SUBSCRIBE failed: %s\n",
		    r ? r->str : c->errstr);
		freeReplyObject(r);
		redisFree(c);
		return NULL;
	}
	freeReplyObject(r);
	/* No read timeout: wait for messages as long as it takes. */
	tv.tv_sec = 0;
	redisSetTimeout(c, tv);
	return c;
}

static int
tail_loop(struct tail *t, const struct config *cfg, const char *channel)
{
	redisContext *c = NULL;

	while (!tail_stop) {
		redisReply *r = NULL;

		if (c == NULL) {
			c = tail_connect(cfg, channel);
			if (c == NULL) {
				sleep(1);
				continue;
			}
			if (!t->json)
				fprintf(stderr, "pginval tail: subscribed to \"%s\" on "
				    "%s\n", channel, cfg->redis_where);
			/* Messages published while away are gone: that is a
			 * gap, whatever the next seq says. */
			if (t->connected) {
				t->gaps++;
				if (!t->json)
					printf("%s!! gap: reconnected, messages may "
					    "have been missed%s\n",
					    tail_paint(t, "\033[1;31m"),
					    tail_paint(t, "\033[0m"));
			}
			t->connected = true;
			apply_seq_forget(&t->seq);
		}
		/* hiredis retries reads interrupted by a signal, so wait for
		 * input here, where Ctrl-C can stop the wait. */
		if (redisGetReplyFromReader(c, (void **)&r) == REDIS_OK &&
		    r == NULL) {
			struct pollfd pfd = { .fd = c->fd, .events = POLLIN };

			if (poll(&pfd, 1, -1) == -1)
				continue;	/* EINTR: check tail_stop */
			if (redisBufferRead(c) == REDIS_OK)
				continue;
		}
		if (r == NULL) {
			if (!tail_stop)
				fprintf(stderr, "pginval tail: connection lost: %s; "
				    "reconnecting\n", c->errstr);
			redisFree(c);
			c = NULL;
			continue;
		}
		if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
		    r->element[2]->type == REDIS_REPLY_STRING)
			tail_print(t, r->element[2]->str, r->element[2]->len);
		freeReplyObject(r);
	}
	redisFree(c);
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
	const char *url = NULL, *channel = NULL, *path = NULL;
	struct sigaction sa;
	char err[256], *errors = NULL;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "c:u:C:jt:k:hV", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 'u': url = optarg; break;
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
	if (channel == NULL)
		channel = cfg->redis_channel ? cfg->redis_channel : "pginval";
	t.color = !t.json && isatty(STDOUT_FILENO) && getenv("NO_COLOR") == NULL;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = tail_on_signal;	/* no SA_RESTART: reads return EINTR */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	rc = tail_loop(&t, cfg, channel);
done:
	if (cfg == &dflt) {
		free(dflt.redis_host);
		free(dflt.redis_unix);
		free(dflt.redis_user);
		free(dflt.redis_password);
		free(dflt.redis_where);
	} else {
		config_free(cfg);
	}
	return rc;
}
