/*
 * The HTTP responder behind [metrics] listen. Each connection reads one
 * request head, calls the handler, writes the response and closes. A
 * finished connection is not freed inside its own watcher's callback: it
 * goes on a list that an ev_check watcher empties after the loop
 * iteration.
 */
#include "http.h"
#include "log.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HTTP_MAX_REQUEST 8192
#define HTTP_MAX_CONNS 64
#define HTTP_TIMEOUT 5.0

struct http_conn {
	struct http_conn *next;
	struct http_server *srv;
	int fd;
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
	ev_check reaper;
	struct http_conn *live, *dead;
	size_t nconns;
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

/* Builds the response for the request head in c->in. */
static void
http_conn_respond(struct http_conn *c)
{
	struct http_response res = { .status = 200,
	    .content_type = "text/plain; charset=utf-8" };
	char method[8], path[1024], head[256];
	size_t plen;

	if (sscanf(c->in.data, "%7s %1023s", method, path) != 2) {
		res.status = 400;
		buf_adds(&res.body, "bad request\n");
	} else if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		res.status = 405;
		buf_adds(&res.body, "only GET\n");
	} else {
		plen = strcspn(path, "?");
		path[plen] = '\0';
		c->srv->handler(c->srv->arg, path, &res);
	}
	snprintf(head, sizeof(head), "HTTP/1.0 %d %s\r\nContent-Type: %s\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n\r\n", res.status,
	    http_reason(res.status), res.content_type, res.body.len);
	buf_adds(&c->out, head);
	if (strcmp(method, "HEAD") != 0)
		buf_add(&c->out, res.body.data, res.body.len);
	buf_free(&res.body);
}

static void
http_conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct http_conn *c = w->data;
	ssize_t n;

	if (c->out.len == 0) {
		char tmp[2048];

		n = read(c->fd, tmp, sizeof(tmp));
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			http_conn_close(c);
			return;
		}
		if (n < 0)
			return;
		buf_add(&c->in, tmp, (size_t)n);
		if (strstr(c->in.data, "\r\n\r\n") == NULL &&
		    strstr(c->in.data, "\n\n") == NULL) {
			if (c->in.len > HTTP_MAX_REQUEST)
				http_conn_close(c);
			return;
		}
		http_conn_respond(c);
		ev_io_stop(loop, &c->io);
		ev_io_set(&c->io, c->fd, EV_WRITE);
		ev_io_start(loop, &c->io);
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

static void
http_conn_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	http_conn_close(w->data);
}

static void
http_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct http_server *s = w->data;
	struct http_conn *c;
	int fd;

	fd = accept(s->fd, NULL, NULL);
	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_warn("metrics: accept");
		return;
	}
	if (s->nconns >= HTTP_MAX_CONNS ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == -1) {
		close(fd);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->srv = s;
	c->fd = fd;
	ev_io_init(&c->io, http_conn_io_cb, fd, EV_READ);
	c->io.data = c;
	ev_timer_init(&c->timer, http_conn_timeout_cb, HTTP_TIMEOUT, 0);
	c->timer.data = c;
	ev_io_start(loop, &c->io);
	ev_timer_start(loop, &c->timer);
	c->next = s->live;
	s->live = c;
	s->nconns++;
}

struct http_server *
http_server_new(struct ev_loop *loop, http_handler *handler, void *arg)
{
	struct http_server *s = xcalloc(1, sizeof(*s));

	s->loop = loop;
	s->handler = handler;
	s->arg = arg;
	s->fd = -1;
	ev_check_init(&s->reaper, http_reaper_cb);
	s->reaper.data = s;
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
	    bind(fd, ai->ai_addr, ai->ai_addrlen) == -1 || listen(fd, 16) == -1) {
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
	if (s->fd >= 0) {
		ev_io_stop(s->loop, &s->accept_io);
		close(s->fd);
	}
	free(s);
}
