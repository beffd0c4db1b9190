# pginval: build, test and install.
#
#   make                      build ./pginval
#   make test                 unit, SQL and integration tests (needs the Debian packages)
#   make SANITIZE=address,undefined test
#   make valgrind             integration tests under valgrind memcheck
#   make fuzz FUZZ_TIME=60    libFuzzer harnesses (clang), FUZZ_TIME seconds each
#   make install PREFIX=/usr DESTDIR=/tmp/pkg
#   make demo                 throwaway PostgreSQL + Redis with invalidations flowing
#   make consistency          the long consistency run of pginval apply (CONSISTENCY_TIME=300)
#   make bench                benchmarks against a reference relay (tests/bench/README.md)

PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share/pginval
# PREFIX=/usr is a system package: its configuration lives in /etc.
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
MANDIR  ?= $(PREFIX)/share/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
VERSION := 0.1.0

CC      ?= cc
PKGS    := libpq hiredis inih libcrypto
WARNINGS := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wformat=2 -Wpointer-arith -Wcast-qual -Wwrite-strings -Wundef \
	-Wno-unused-parameter
ifdef CI
WARNINGS += -Werror
endif
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(WARNINGS) \
	-DPGINVAL_VERSION='"$(VERSION)"' -MMD -MP -Idaemon \
	$(shell pkg-config --cflags $(PKGS))
LDLIBS  += $(shell pkg-config --libs $(PKGS)) -lev -lm

ifdef SANITIZE
CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SANITIZE)
endif

# daemon/lib: generic parts; daemon/core: the domain; daemon/run and
# daemon/apply: the two commands; main.c and tail.c at the top. Includes
# name the folder ("lib/buf.h") and only point down: tests/check_layout.sh.
SRCS := $(wildcard daemon/*.c daemon/*/*.c)
OBJS := $(SRCS:.c=.o)

all: pginval

pginval: $(OBJS)
	$(CC) $(LDFLAGS) -o $@ $(OBJS) $(LDLIBS)

# The cache fill script (daemon/fill.lua) is shipped as a file for readers
# and compiled into pginval apply, which loads it into every target.
daemon/apply/fill_lua.h: daemon/fill.lua
	sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' $< >$@
daemon/apply/apply_target.o: daemon/apply/fill_lua.h

# Each unit test links only the module it tests (plus log, buf, xalloc and esc,
# which every module uses: the log writer escapes every line).
UNIT_TESTS := backoff config decode message rules apply_key stats prom fifo esc \
	sign http_head log sink_msg pgoutput wal_rel redis_slots redis_history \
	redis_nodes redis_cap redis_sentinel_reply
UNIT_BINS  := $(UNIT_TESTS:%=tests/unit/test_%)
RULES_OBJS := daemon/core/rules.o daemon/core/decode.o daemon/lib/keys.o \
	daemon/lib/strs.o daemon/lib/json_read.o
UNIT_DEPS_config  := daemon/core/config.o daemon/core/config_sections.o \
	daemon/core/config_secret.o daemon/lib/redis_addr.o \
	daemon/lib/redis_slots.o $(RULES_OBJS)
UNIT_DEPS_decode  := daemon/core/decode.o daemon/lib/json_read.o
UNIT_DEPS_message := daemon/core/message.o daemon/lib/json_write.o $(RULES_OBJS)
UNIT_DEPS_rules   := $(RULES_OBJS)
UNIT_DEPS_backoff := daemon/lib/backoff.o
UNIT_DEPS_apply_key := daemon/apply/apply_key.o
UNIT_DEPS_stats   := daemon/run/stats.o daemon/lib/prom.o daemon/lib/hist.o
UNIT_DEPS_prom    := daemon/lib/prom.o daemon/lib/hist.o
UNIT_DEPS_fifo    := daemon/lib/fifo.o
UNIT_DEPS_sink_msg := daemon/run/sink_msg.o daemon/lib/keys.o
UNIT_DEPS_esc     :=
UNIT_DEPS_sign    := daemon/core/sign.o
UNIT_DEPS_http_head := daemon/lib/http_head.o
UNIT_DEPS_log     :=
UNIT_DEPS_pgoutput := daemon/core/pgoutput.o
UNIT_DEPS_wal_rel := daemon/core/wal_rel.o daemon/core/pgoutput.o \
	daemon/core/decode.o daemon/lib/json_read.o
UNIT_DEPS_redis_slots := daemon/lib/redis_slots.o
UNIT_DEPS_redis_history := daemon/lib/redis_history.o
UNIT_DEPS_redis_nodes := daemon/lib/redis_nodes.o daemon/lib/redis_slots.o
UNIT_DEPS_redis_cap := daemon/lib/redis_cap.o
UNIT_DEPS_redis_sentinel_reply := daemon/lib/redis_sentinel_reply.o
COMMON_OBJS := daemon/lib/log.o daemon/lib/buf.o daemon/lib/xalloc.o daemon/lib/esc.o

.SECONDEXPANSION:
tests/unit/test_%: tests/unit/test_%.o $$(UNIT_DEPS_$$*) $(COMMON_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(shell pkg-config --libs cmocka)

tests/unit/%.o: CFLAGS += $(shell pkg-config --cflags cmocka)

unit: $(UNIT_BINS)
	@tests/run-unit $(UNIT_BINS)

# Fuzzing with libFuzzer (clang): each harness in tests/fuzz/ runs for
# FUZZ_TIME seconds on a working copy of its seed corpus in tests/fuzz/out/,
# where any crashing input is saved. The daemon sources are compiled again
# with the fuzzer and sanitizers, into tests/fuzz/obj/.
FUZZ_CC      ?= clang
FUZZ_TIME    ?= 60
FUZZ_FLAGS   ?= -max_len=16384 -timeout=30 -print_final_stats=1
FUZZ_TARGETS := decode message rules config esc sign http pgoutput redis_slots \
	redis_nodes redis_sentinel
FUZZ_BINS    := $(FUZZ_TARGETS:%=tests/fuzz/fuzz_%)
FUZZ_MODULES := lib/log lib/buf lib/xalloc lib/esc lib/json_read lib/json_write \
	lib/keys lib/strs lib/redis_addr lib/http_head core/decode \
	core/rules core/message core/config core/config_sections core/config_secret \
	core/sign core/pgoutput core/wal_rel lib/redis_slots lib/redis_history \
	lib/redis_nodes lib/redis_cap lib/redis_sentinel_reply
FUZZ_OBJS    := $(FUZZ_MODULES:%=tests/fuzz/obj/%.o)
FUZZ_PKGS    := inih libpq libcrypto hiredis
FUZZ_SAN     := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer
FUZZ_CFLAGS  := -O1 -g -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
	$(WARNINGS) -Wno-format-nonliteral -MMD -MP -Idaemon $(FUZZ_SAN) \
	$(shell pkg-config --cflags $(FUZZ_PKGS))

tests/fuzz/obj/%.o: daemon/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

tests/fuzz/obj/fuzz_%.o: tests/fuzz/fuzz_%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

tests/fuzz/fuzz_%: tests/fuzz/obj/fuzz_%.o $(FUZZ_OBJS)
	$(FUZZ_CC) $(FUZZ_SAN) -o $@ $^ $(shell pkg-config --libs $(FUZZ_PKGS)) -lm

fuzz: $(FUZZ_BINS)
	@failed=""; for t in $(FUZZ_TARGETS); do \
		mkdir -p tests/fuzz/out/$$t; \
		cp tests/fuzz/corpus/$$t/* tests/fuzz/out/$$t/; \
		echo "fuzz: $$t for $(FUZZ_TIME)s"; \
		tests/fuzz/fuzz_$$t $(FUZZ_FLAGS) -max_total_time=$(FUZZ_TIME) \
		    -dict=tests/fuzz/$$t.dict \
		    -artifact_prefix=tests/fuzz/out/$$t- tests/fuzz/out/$$t || \
		    failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then \
		echo "fuzz: failed:$$failed (inputs in tests/fuzz/out/)" >&2; exit 1; \
	fi

.SECONDARY: $(FUZZ_OBJS) $(FUZZ_TARGETS:%=tests/fuzz/obj/fuzz_%.o)
.PHONY: fuzz
-include $(wildcard tests/fuzz/obj/*.d tests/fuzz/obj/*/*.d)

deps:
	@scripts/install-deps

# The layout check: an include that climbs up a layer fails it.
layout:
	@tests/check_layout.sh

# The layout check first, then every suite.
test: deps layout pginval $(UNIT_BINS)
	@tests/run-all $(UNIT_BINS)

VALGRIND := valgrind --quiet --error-exitcode=99 --leak-check=full \
	--show-leak-kinds=definite,indirect,possible \
	--errors-for-leak-kinds=definite,indirect,possible

# The unit tests, then every daemon of the integration suites, under
# memcheck: any error or leak fails the run.
valgrind: deps pginval $(UNIT_BINS)
	@for t in $(UNIT_BINS); do $(VALGRIND) $$t >/dev/null 2>&1 || \
		{ echo "valgrind: $$t failed"; $(VALGRIND) $$t; exit 1; }; done
	@echo "valgrind: unit tests clean"
	@PGINVAL_WRAPPER="$(VALGRIND)" python3 tests/integration/test_e2e.py
	@PGINVAL_WRAPPER="$(VALGRIND)" python3 tests/integration/test_durable.py
	@PGINVAL_WRAPPER="$(VALGRIND)" python3 tests/integration/test_apply.py
	@PGINVAL_WRAPPER="$(VALGRIND)" python3 tests/integration/test_trust.py
	@PGINVAL_WRAPPER="$(VALGRIND)" python3 tests/integration/test_partitions.py
	@PGINVAL_WRAPPER="$(VALGRIND)" python3 tests/integration/test_wal.py
	@PGINVAL_WRAPPER="$(VALGRIND)" python3 tests/integration/test_cluster.py
	@PGINVAL_WRAPPER="$(VALGRIND)" python3 tests/integration/test_forget.py

demo: deps pginval
	@scripts/demo

# pginval apply under writers, cache-aside readers and faults, for
# CONSISTENCY_TIME seconds; `make test` runs a short version.
CONSISTENCY_TIME ?= 300
consistency: deps pginval
	@/usr/bin/python3 tests/consistency/run.py --duration $(CONSISTENCY_TIME)

# Benchmarks: the reference relay and the subscriber are built with the
# daemon's flags; BENCH_N, BENCH_BULK, BENCH_RUNS... scale the runs.
BENCH_BINS := tests/bench/refrelay tests/bench/sub

$(BENCH_BINS): %: %.c
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS)

bench: deps pginval $(BENCH_BINS)
	@python3 tests/bench/run.py

# The units' ExecStart= (and the paths in their comments) follow BINDIR and
# DATADIR. The example configuration goes to SYSCONFDIR/pginval/ as well as
# DATADIR; uninstall leaves a real pginval.conf there alone.
UNITS := pginval.service pginval-apply.service

install: pginval
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR) $(DESTDIR)$(SYSCONFDIR)/pginval \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR)
	install -m 755 pginval $(DESTDIR)$(BINDIR)/pginval
	install -m 644 sql/pginval.sql sql/uninstall.sql $(DESTDIR)$(DATADIR)/
	install -m 644 deploy/pginval.conf.example $(DESTDIR)$(DATADIR)/
	install -m 644 deploy/pginval.conf.example $(DESTDIR)$(SYSCONFDIR)/pginval/
	install -m 644 docs/pginval.8 $(DESTDIR)$(MANDIR)/man8/pginval.8
	for u in $(UNITS); do \
		sed -e 's|^\(#* *ExecStart=\)/usr/local/bin/pginval |\1$(BINDIR)/pginval |' \
		    -e 's|/usr/local/share/pginval/|$(DATADIR)/|g' \
		    deploy/$$u >$(DESTDIR)$(UNITDIR)/$$u && \
		chmod 644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/pginval
	rm -rf $(DESTDIR)$(DATADIR)
	rm -f $(DESTDIR)$(MANDIR)/man8/pginval.8
	rm -f $(UNITS:%=$(DESTDIR)$(UNITDIR)/%)
	rm -f $(DESTDIR)$(SYSCONFDIR)/pginval/pginval.conf.example
	rmdir $(DESTDIR)$(SYSCONFDIR)/pginval 2>/dev/null || true

clean:
	rm -f pginval daemon/*.o daemon/*.d daemon/*/*.o daemon/*/*.d
	rm -f tests/unit/*.o tests/unit/*.d $(UNIT_BINS)
	rm -f daemon/apply/fill_lua.h
	rm -rf $(FUZZ_BINS) tests/fuzz/obj
	rm -f $(BENCH_BINS) tests/bench/*.d

.PHONY: all unit layout deps test valgrind demo bench consistency install uninstall clean
-include $(SRCS:.c=.d) $(wildcard tests/unit/*.d)
