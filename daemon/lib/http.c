/*
 * The HTTP responder behind [metrics] listen. Each connection reads one
 * request head (parsed by http_head), calls the handler, writes the
 * response and closes. A finished connection is not freed inside its own
 * watcher's callback: it goes on a list that an ev_check watcher empties
 * after the loop iteration.
 *
 * The port is open to whoever can reach it, so nothing a peer does may
 * hold the loop or starve the probes: a fixed deadline per connection,
 * room made by closing the oldest silent connection, a cap per address,
 * and a pause instead of a busy loop when accept runs out of descriptors.
 */
#define _GNU_SOURCE	/* accept4 */
#include "lib/http.h"
#include "lib/http_head.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define HTTP_MAX_CONNS 64	/* at most; a quarter of RLIMIT_NOFILE if less */
#define HTTP_MAX_PER_PEER 8	/* connections from one address */
#define HTTP_TIMEOUT 5.0	/* from accept to the response written */
#define HTTP_ACCEPT_BATCH 32	/* accepts per wake-up */
#define HTTP_PAUSE_MIN 1.0	/* accepts paused when out of descriptors */
#define HTTP_PAUSE_MAX 16.0
#define HTTP_REPORT_EVERY 60.0	/* seconds between complaints */

enum http_conn_state {
	HTTP_CONN_HEAD,		/* reading the request head */
	HTTP_CONN_REPLY,	/* writing the response */
};

struct http_conn {
	struct http_conn *next;	/* newer connections come first */
	struct http_server *srv;
	int fd;
	enum http_conn_state state;
	unsigned char peer[16];	/* the address (IPv4 mapped into IPv6) */
	ev_io io;
	ev_timer timer;
	struct buf in, out;
	size_t sent;
};

struct http_server {
	struct ev_loop *loop;
	http_handler *handler;
	void *arg;
	int fd;
	ev_io accept_io;
	ev_timer pause;		/* accepts stopped while it runs */
	double pause_delay;	/* the next pause; 0 after a good accept */
	ev_check reaper;
	struct http_conn *live, *dead;
	size_t nconns, max_conns;
	/* Complaints about room, at most one per HTTP_REPORT_EVERY. */
	ev_tstamp reported_at;
	unsigned unreported;
};

int
http_split_addr(const char *addr, char *host, size_t hostlen, char *port,
    size_t portlen)
{
	const char *colon, *h = addr;
	size_t hl;

	if (addr[0] == '[') {
		const char *end = strchr(addr, ']');

		if (end == NULL || end[1] != ':')
			return -1;
		h = addr + 1;
		hl = (size_t)(end - h);
		colon = end + 1;
	} else {
		colon = strrchr(addr, ':');
		if (colon == NULL || memchr(addr, ':', (size_t)(colon - addr)))
			return -1;
		hl = (size_t)(colon - addr);
	}
	if (hl == 0 || hl >= hostlen || strlen(colon + 1) == 0 ||
	    strlen(colon + 1) >= portlen ||
	    strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
	    atoi(colon + 1) < 1 || atoi(colon + 1) > 65535)
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

static void
http_conn_close(struct http_conn *c)
{
	struct http_server *s = c->srv;
	struct http_conn **pp;

	ev_io_stop(s->loop, &c->io);
	ev_timer_stop(s->loop, &c->timer);
	close(c->fd);
	c->fd = -1;
	for (pp = &s->live; *pp != NULL; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	c->next = s->dead;
	s->dead = c;
	s->nconns--;
	ev_check_start(s->loop, &s->reaper);
}

static void
http_conn_free(struct http_conn *c)
{
	buf_free(&c->in);
	buf_free(&c->out);
	free(c);
}

static void
http_reaper_cb(struct ev_loop *loop, ev_check *w, int revents)
{
	struct http_server *s = w->data;
	struct http_conn *c;

	while ((c = s->dead) != NULL) {
		s->dead = c->next;
		http_conn_free(c);
	}
	ev_check_stop(loop, w);
}

static void http_report(struct http_server *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* At most one line per HTTP_REPORT_EVERY; the rest are counted. */
static void
http_report(struct http_server *s, const char *fmt, ...)
{
	ev_tstamp now = ev_now(s->loop);
	char msg[256];
	va_list ap;

	if (s->reported_at > 0 && now - s->reported_at < HTTP_REPORT_EVERY) {
		s->unreported++;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (s->unreported > 0)
		log_warnx("metrics: %s (and %u similar events in the last %.0fs)",
		    msg, s->unreported, now - s->reported_at);
	else
		log_warnx("metrics: %s", msg);
	s->reported_at = now;
	s->unreported = 0;
}

static const char *
http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 503: return "Service Unavailable";
	default: return "Error";
	}
}

/* Builds the response to a complete head (r is not HTTP_HEAD_INCOMPLETE
 * or HTTP_HEAD_TOO_LARGE). */
static void
http_conn_respond(struct http_conn *c, enum http_head_result r,
    const struct http_request *req)
{
	struct http_response res = { .status = 200,
	    .content_type = "text/plain; charset=utf-8" };
	char head[256];

	if (r == HTTP_HEAD_BAD) {
		res.status = 400;
		buf_adds(&res.body, "bad request\n");
	} else if (r == HTTP_HEAD_METHOD) {
		res.status = 405;
		buf_adds(&res.body, "only GET\n");
	} else {
		c->srv->handler(c->srv->arg, req->path, &res);
	}
	snprintf(head, sizeof(head), "HTTP/1.0 %d %s\r\nContent-Type: %s\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n\r\n", res.status,
	    http_reason(res.status), res.content_type, res.body.len);
	buf_adds(&c->out, head);
	if (r != HTTP_HEAD_OK || !req->head)
		buf_add(&c->out, res.body.data, res.body.len);
	buf_free(&res.body);
}

/* Reads what has come; once the head is complete, answers it. */
static void
http_conn_read(struct http_conn *c)
{
	struct http_request req;
	enum http_head_result r;
	char tmp[2048];
	ssize_t n;

	n = read(c->fd, tmp, sizeof(tmp));
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		http_conn_close(c);
		return;
	}
	if (n < 0)
		return;
	buf_add(&c->in, tmp, (size_t)n);
	r = http_head_parse(c->in.data, c->in.len, &req);
	if (r == HTTP_HEAD_INCOMPLETE)
		return;
	if (r == HTTP_HEAD_TOO_LARGE) {
		http_conn_close(c);
		return;
	}
	http_conn_respond(c, r, &req);
	c->state = HTTP_CONN_REPLY;
	ev_io_stop(c->srv->loop, &c->io);
	ev_io_set(&c->io, c->fd, EV_WRITE);
	ev_io_start(c->srv->loop, &c->io);
}

static void
http_conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct http_conn *c = w->data;
	ssize_t n;

	if (c->state == HTTP_CONN_HEAD) {
		http_conn_read(c);
		return;
	}
	n = write(c->fd, c->out.data + c->sent, c->out.len - c->sent);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0) {
		http_conn_close(c);
		return;
	}
	c->sent += (size_t)n;
	if (c->sent == c->out.len)
		http_conn_close(c);
}

/* The whole exchange has HTTP_TIMEOUT from the accept: a peer that
 * trickles its head byte by byte gains nothing. */
static void
http_conn_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	http_conn_close(w->data);
}

static void
http_peer_key(const struct sockaddr_storage *ss, unsigned char key[16])
{
	memset(key, 0, 16);
	if (ss->ss_family == AF_INET) {
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
	}
}

/* The oldest connection still waiting for its head, from peer (or from
 * anyone when peer is NULL); *count is how many peer has. */
static struct http_conn *
http_oldest_idle(struct http_server *s, const unsigned char *peer,
    size_t *count)
{
	struct http_conn *c, *oldest = NULL;

	*count = 0;
	for (c = s->live; c != NULL; c = c->next) {
		if (peer != NULL && memcmp(c->peer, peer, 16) != 0)
			continue;
		(*count)++;
		if (c->state == HTTP_CONN_HEAD)
			oldest = c;
	}
	return oldest;
}

/*
 * Takes a new connection. When its address already has HTTP_MAX_PER_PEER,
 * or the server max_conns, the oldest connection that has not sent its
 * head yet (of that address, or of anyone) is closed to make room: idle
 * connections cannot lock out a probe. Only when every connection is
 * being answered is the new one refused.
 */
static void
http_admit(struct http_server *s, int fd, const struct sockaddr_storage *ss)
{
	unsigned char peer[16];
	struct http_conn *c, *victim = NULL;
	size_t n;
	bool full;

	http_peer_key(ss, peer);
	victim = http_oldest_idle(s, peer, &n);
	if (!(full = n >= HTTP_MAX_PER_PEER))
		victim = http_oldest_idle(s, NULL, &n);
	if (full || s->nconns >= s->max_conns) {
		if (victim == NULL) {
			close(fd);
			http_report(s, "refused a connection: all %zu are busy "
			    "answering", s->nconns);
			return;
		}
		http_conn_close(victim);
		http_report(s, "closed an idle connection to make room (%s)",
		    full ? "too many from one address" : "too many connections");
	}
	c = xcalloc(1, sizeof(*c));
	c->srv = s;
	c->fd = fd;
	c->state = HTTP_CONN_HEAD;
	memcpy(c->peer, peer, sizeof(peer));
	ev_io_init(&c->io, http_conn_io_cb, fd, EV_READ);
	c->io.data = c;
	ev_timer_init(&c->timer, http_conn_timeout_cb, HTTP_TIMEOUT, 0);
	c->timer.data = c;
	ev_io_start(s->loop, &c->io);
	ev_timer_start(s->loop, &c->timer);
	c->next = s->live;
	s->live = c;
	s->nconns++;
}

/*
 * Out of descriptors or memory: accept would fail again at once, and the
 * loop would spin on the pending connection. Stop accepting for a while
 * (longer each time in a row), and give an idle connection's descriptor
 * back to the rest of the daemon, which needs them to reconnect.
 */
static void
http_pause(struct http_server *s, int err)
{
	struct http_conn *idle;
	size_t n;

	s->pause_delay = s->pause_delay == 0 ? HTTP_PAUSE_MIN :
	    s->pause_delay * 2 > HTTP_PAUSE_MAX ? HTTP_PAUSE_MAX :
	    s->pause_delay * 2;
	if ((idle = http_oldest_idle(s, NULL, &n)) != NULL)
		http_conn_close(idle);
	http_report(s, "cannot accept a connection: %s; not accepting for "
	    "%.0fs%s", strerror(err), s->pause_delay, err == EMFILE ||
	    err == ENFILE ? " (out of file descriptors: raise LimitNOFILE, or "
	    "find what holds them)" : "");
	ev_io_stop(s->loop, &s->accept_io);
	ev_timer_set(&s->pause, s->pause_delay, 0);
	ev_timer_start(s->loop, &s->pause);
}

static void
http_pause_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct http_server *s = w->data;

	ev_io_start(loop, &s->accept_io);
}

static void
http_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct http_server *s = w->data;
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd;

	for (int i = 0; i < HTTP_ACCEPT_BATCH; i++) {
		sl = sizeof(ss);
		fd = accept4(s->fd, (struct sockaddr *)&ss, &sl,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			s->pause_delay = 0;
			http_admit(s, fd, &ss);
			continue;
		}
		switch (errno) {
		case EINTR:
		case ECONNABORTED:
		case EPROTO:
			continue;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			http_pause(s, errno);
			return;
		case EAGAIN:
			return;
		default:
			http_report(s, "accept: %s", strerror(errno));
			return;
		}
	}
}

/* Connections are capped at a quarter of the descriptors the process may
 * open, so that the metrics port alone never takes them all. */
static size_t
http_max_conns(void)
{
	struct rlimit rl;
	rlim_t quarter;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == RLIM_INFINITY)
		return HTTP_MAX_CONNS;
	quarter = rl.rlim_cur / 4;
	return quarter < 1 ? 1 : quarter < HTTP_MAX_CONNS ? (size_t)quarter :
	    HTTP_MAX_CONNS;
}

struct http_server *
http_server_new(struct ev_loop *loop, http_handler *handler, void *arg)
{
	struct http_server *s = xcalloc(1, sizeof(*s));

	s->loop = loop;
	s->handler = handler;
	s->arg = arg;
	s->fd = -1;
	s->max_conns = http_max_conns();
	ev_check_init(&s->reaper, http_reaper_cb);
	s->reaper.data = s;
	ev_timer_init(&s->pause, http_pause_cb, 0, 0);
	s->pause.data = s;
	return s;
}

int
http_server_listen(struct http_server *s, const char *addr, char *err,
    size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
	    .ai_socktype = SOCK_STREAM,
	    .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	char host[256], port[16];
	int fd = -1, one = 1, rc;

	if (http_split_addr(addr, host, sizeof(host), port, sizeof(port)) == -1) {
		snprintf(err, errlen, "\"%s\" is not host:port", addr);
		return -1;
	}
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc != 0) {
		snprintf(err, errlen, "\"%s\": %s (use a numeric address)", addr,
		    gai_strerror(rc));
		return -1;
	}
	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) == -1 || listen(fd, SOMAXCONN) == -1) {
		snprintf(err, errlen, "cannot listen on %s: %s", addr,
		    strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	s->fd = fd;
	ev_io_init(&s->accept_io, http_accept_cb, fd, EV_READ);
	s->accept_io.data = s;
	ev_io_start(s->loop, &s->accept_io);
	return 0;
}

void
http_server_free(struct http_server *s)
{
	if (s == NULL)
		return;
	while (s->live != NULL)
		http_conn_close(s->live);
	http_reaper_cb(s->loop, &s->reaper, 0);
	ev_timer_stop(s->loop, &s->pause);
	if (s->fd >= 0) {
		ev_io_stop(s->loop, &s->accept_io);
		close(s->fd);
	}
	free(s);
}
