# pginval: build, test and install.
#
#   make                      build ./pginval
#   make test                 unit, SQL and integration tests (needs the Debian packages)
#   make SANITIZE=address,undefined test
#   make valgrind             integration tests under valgrind memcheck
#   make install PREFIX=/usr DESTDIR=/tmp/pkg
#   make demo                 throwaway PostgreSQL + Redis with invalidations flowing

PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share/pginval
SYSCONFDIR ?= $(PREFIX)/etc
VERSION := 0.1.0

CC      ?= cc
PKGS    := libpq hiredis libcjson inih
WARNINGS := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wformat=2 -Wpointer-arith -Wcast-qual -Wwrite-strings -Wundef \
	-Wno-unused-parameter
ifdef CI
WARNINGS += -Werror
endif
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(WARNINGS) \
	-DPGINVAL_VERSION='"$(VERSION)"' -MMD -MP \
	$(shell pkg-config --cflags $(PKGS))
LDLIBS  += $(shell pkg-config --libs $(PKGS)) -lev -lm

ifdef SANITIZE
CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SANITIZE)
endif

SRCS := $(wildcard daemon/*.c)
OBJS := $(SRCS:.c=.o)

all: pginval

pginval: $(OBJS)
	$(CC) $(LDFLAGS) -o $@ $(OBJS) $(LDLIBS)

# Each unit test links only the module it tests (plus log and buf, which
# every module uses).
UNIT_TESTS := backoff config decode message rules
UNIT_BINS  := $(UNIT_TESTS:%=tests/unit/test_%)
UNIT_DEPS_config  := daemon/config.o daemon/rules.o daemon/decode.o
UNIT_DEPS_decode  := daemon/decode.o
UNIT_DEPS_message := daemon/message.o daemon/decode.o daemon/rules.o
UNIT_DEPS_rules   := daemon/rules.o daemon/decode.o
UNIT_DEPS_backoff := daemon/backoff.o
COMMON_OBJS := daemon/log.o daemon/buf.o

.SECONDEXPANSION:
tests/unit/test_%: tests/unit/test_%.o $$(UNIT_DEPS_$$*) $(COMMON_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(shell pkg-config --libs cmocka)

tests/unit/%.o: CFLAGS += $(shell pkg-config --cflags cmocka)

unit: $(UNIT_BINS)
	@tests/run-unit $(UNIT_BINS)

deps:
	@scripts/install-deps

test: deps pginval $(UNIT_BINS)
	@tests/run-all $(UNIT_BINS)

valgrind: deps pginval
	@PGINVAL_WRAPPER="valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible" \
		python3 tests/integration/test_e2e.py

demo: deps pginval
	@scripts/demo

install: pginval
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR) $(DESTDIR)$(SYSCONFDIR)/pginval
	install -m 755 pginval $(DESTDIR)$(BINDIR)/pginval
	install -m 644 sql/pginval.sql sql/uninstall.sql $(DESTDIR)$(DATADIR)/
	install -m 644 deploy/pginval.conf.example $(DESTDIR)$(DATADIR)/

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/pginval
	rm -rf $(DESTDIR)$(DATADIR)

clean:
	rm -f pginval daemon/*.o daemon/*.d tests/unit/*.o tests/unit/*.d $(UNIT_BINS)

.PHONY: all unit deps test valgrind demo install uninstall clean
-include $(SRCS:.c=.d) $(wildcard tests/unit/*.d)
