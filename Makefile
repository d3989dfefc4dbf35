# huiqi: one non-recursive GNU make file. `make` builds build/huiqid and the tools,
# `make test` installs what is missing, builds and runs every test (unit,
# integration, and both again under ASan+UBSan), `make run` starts Redis and huiqid
# with demo data. `make help` lists the rest.

CC       ?= cc
BUILD    ?= build
PKGS     := libuv jansson hiredis libcurl libcrypto
STD      := -std=c11 -D_POSIX_C_SOURCE=200809L
WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wpointer-arith -Wcast-qual -Wwrite-strings -Wvla -Wformat=2 -Wundef
WERROR   ?= -Werror
OPT      ?= -O2
DEBUG    ?= -g
SAN      ?=
# x86-64-v2 (2009 and later: POPCNT, SSE4.2) makes popcount one instruction.
ARCH     ?= $(if $(filter x86_64,$(shell uname -m)),-march=x86-64-v2 -mtune=generic,)
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LLHTTP_DIR ?= /usr/share/llhttp
LLHTTP_INC ?= /usr/share/include/llhttp

ALL_CFLAGS = $(STD) $(WARN) $(WERROR) $(OPT) $(DEBUG) $(ARCH) $(SAN) -I. $(PKG_CFLAGS) $(CFLAGS)
LDLIBS_ALL = $(PKG_LIBS) -lpthread -lm $(LDLIBS)

PURE_SRC := common/xalloc.c \
            matcher/rule.c matcher/cont.c matcher/matcher.c matcher/layout.c matcher/eval.c \
            matcher/polset.c \
            tags/uscc.c tags/taxonomy.c tags/date.c tags/rules.c common/sbuf.c common/histo.c
STORE_SRC := store/redis_uv.c store/link.c store/store.c store/store_load.c store/codec.c \
            store/push.c store/keys.c store/scripts.c store/mirror.c
API_SRC  := api/main.c api/config.c api/log.c api/server.c api/httpd.c api/router.c \
            api/json.c api/json_out.c api/app.c api/ent_input.c api/ent_lane.c api/pol_input.c api/h_tags.c \
            api/h_enterprises.c api/h_policies.c api/h_match.c api/h_health.c \
            api/h_import.c api/h_retag.c api/retag.c api/render.c api/h_webhooks.c \
            api/h_push.c api/auth.c api/access.c api/h_keys.c \
            api/metrics.c api/h_metrics.c
PUSH_SRC := push/sign.c push/ssrf.c push/http.c push/engine.c push/jobs.c
UNIT_SRC := tests/unit_main.c tests/test_matcher.c tests/test_tags.c tests/test_rules.c \
            tests/test_push.c tests/test_mirror.c
# The Redis link tests (reliability.md A4): the unit runner built over another test
# list, with the link, the adapter and a private redis-server (tests/redis_proc.c).
LINK_TEST_OBJ := $(BUILD)/tests/link_main.o $(BUILD)/tests/test_link.o \
            $(BUILD)/tests/redis_proc.o $(BUILD)/store/link.o $(BUILD)/store/redis_uv.o \
            $(BUILD)/common/xalloc.o $(BUILD)/common/histo.o $(BUILD)/common/sbuf.o

PURE_OBJ  := $(PURE_SRC:%.c=$(BUILD)/%.o)
STORE_OBJ := $(STORE_SRC:%.c=$(BUILD)/%.o)
API_OBJ   := $(API_SRC:%.c=$(BUILD)/%.o)
PUSH_OBJ  := $(PUSH_SRC:%.c=$(BUILD)/%.o)
UNIT_OBJ  := $(UNIT_SRC:%.c=$(BUILD)/%.o)
LLHTTP_OBJ := $(BUILD)/llhttp/llhttp.o $(BUILD)/llhttp/api.o $(BUILD)/llhttp/http.o
BLOB_OBJ  := $(BUILD)/tags/default_taxonomy.o $(BUILD)/tags/default_rules.o

.PHONY: all deps test unit link-test integration asan test-asan test-valgrind reliability run stop demo bench bench-smoke perf-gate load soak push-bench \
        load-smoke fuzz fuzz-http fuzz-json fuzz-api fuzz-http-runs fuzz-long \
        fuzz-smoke fuzz-build clean format check-format lint help
.DEFAULT_GOAL := all

all: $(BUILD)/huiqid $(BUILD)/unit $(BUILD)/link_test $(BUILD)/tests/failmalloc.so \
     $(BUILD)/tests/netshim.so

help:
	@echo "make            build $(BUILD)/huiqid and $(BUILD)/unit"
	@echo "make run        install deps, build, start Redis + huiqid with demo data"
	@echo "make test       install deps, build, run unit + integration tests, then under ASan+UBSan"
	@echo "make unit       unit tests only;  make integration: integration tests only"
	@echo "make link-test  the Redis link re-entrancy tests (starts its own redis-server)"
	@echo "make test-valgrind  unit, link and integration tests under valgrind memcheck (CI)"
	@echo "make reliability    the reliability checklist's long runs at full size (CI)"
	@echo "make asan       build into build-asan/ with -fsanitize=address,undefined"
	@echo "make bench      huiqi vs Redis, CRoaring, PostgreSQL, nginx -> docs/benchmarks.md"
	@echo "                (BENCH_N=11100000 for 10x; make bench-smoke: a tiny run for CI)"
	@echo "make perf-gate  callgrind instruction counts of the matcher's hot paths and of each kind of"
	@echo "                HTTP request (and its Redis commands) vs baselines (CI)"
	@echo "make load       wrk (256 conns) and the open-loop generator on a 1.11M city; make soak:"
	@echo "                10 min with RSS samples; make load-smoke: a tiny run for CI"
	@echo "make push-bench 100k signed deliveries and a 1.11M package.batch push to a local nginx"
	@echo "make fuzz       libFuzzer (clang, ASan+UBSan): the HTTP parser, the JSON bodies and the"
	@echo "                whole API (in-memory store), FUZZ_SECONDS (600) each; make fuzz-http /"
	@echo "                fuzz-json / fuzz-api: one of them; fuzz-smoke (CI): 10 M runs of the"
	@echo "                parser harness, 70 s of the others; fuzz-long: 100 M runs of the parser"
	@echo "make format / check-format / lint"

deps:
	@./deploy/install-deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

# llhttp comes as C sources in Debian's node-llhttp package; it is compiled from
# there (never copied into the tree) with its own, milder warning set.
$(BUILD)/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 $(OPT) $(DEBUG) $(ARCH) $(SAN) -w -I$(LLHTTP_INC) -c $< -o $@

# The default taxonomy and rules are linked into the binary so huiqid runs from
# anywhere: an assembler .incbin of the data file, between two symbols.
define EMBED
	@mkdir -p $(dir $@)
	printf '.section .rodata\n.global $(1)\n.global $(1)_end\n$(1):\n.incbin "%s"\n$(1)_end:\n.byte 0\n.section .note.GNU-stack,"",@progbits\n' "$<" > $(@:.o=.S)
	$(CC) -c $(@:.o=.S) -o $@
endef
$(BUILD)/tags/default_taxonomy.o: tags/taxonomy.tsv
	$(call EMBED,huiqi_default_taxonomy)
$(BUILD)/tags/default_rules.o: tags/rules.conf
	$(call EMBED,huiqi_default_rules)

$(BUILD)/huiqid: $(API_OBJ) $(STORE_OBJ) $(PUSH_OBJ) $(PURE_OBJ) $(LLHTTP_OBJ) $(BLOB_OBJ)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS_ALL)

# The allocation-failure shim the integration tests LD_PRELOAD into huiqid
# (tests/failmalloc.c). Never sanitized: it sits in front of ASan's allocator.
$(BUILD)/tests/failmalloc.so: tests/failmalloc.c
	@mkdir -p $(dir $@)
	$(CC) $(STD) $(WARN) $(WERROR) $(OPT) $(DEBUG) -fPIC -shared -o $@ $< -ldl -lpthread

# The resolver and connect() shim the webhook address-policy tests LD_PRELOAD into
# huiqid (tests/netshim.c): test host names answer what a test says, and nothing
# connects beyond loopback. Never sanitized, like failmalloc.so.
$(BUILD)/tests/netshim.so: tests/netshim.c
	@mkdir -p $(dir $@)
	$(CC) $(STD) $(WARN) $(WERROR) $(OPT) $(DEBUG) -fPIC -shared -o $@ $< -ldl

# tests/test_push.c's ctgrind check (constant-time signature comparison) needs
# valgrind's client-request header, which `make test-valgrind` installs: a stamp
# rebuilds the test when the header appears or goes.
MEMCHECK_DEF := $(if $(wildcard /usr/include/valgrind/memcheck.h),-DHAVE_MEMCHECK)
$(BUILD)/tests/test_push.o: ALL_CFLAGS += $(MEMCHECK_DEF)
$(BUILD)/tests/test_push.o: $(BUILD)/tests/memcheck.flags
$(BUILD)/tests/memcheck.flags: FORCE
	@mkdir -p $(dir $@)
	@echo '$(MEMCHECK_DEF)' | cmp -s - $@ || echo '$(MEMCHECK_DEF)' > $@

$(BUILD)/unit: $(UNIT_OBJ) $(PURE_OBJ) $(BUILD)/push/sign.o $(BUILD)/push/ssrf.o \
               $(BUILD)/store/mirror.o $(BLOB_OBJ)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/tests/link_main.o: tests/unit_main.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DUNIT_LIST='"tests/link_list.h"' -MMD -MP -c $< -o $@

$(BUILD)/link_test: $(LINK_TEST_OBJ)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS_ALL)
# With glibc's per-thread cache off, the link tests can compare the heap exactly.
LINK_TEST_ENV := GLIBC_TUNABLES=glibc.malloc.tcache_count=0

BENCH_OBJ := $(BUILD)/bench/bench.o $(BUILD)/bench/gen.o $(BUILD)/bench/data.o
$(BUILD)/bench/bench: $(BENCH_OBJ) $(PURE_OBJ) $(BLOB_OBJ)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS_ALL)

# bench/peers: the same policies on Redis bitmaps, CRoaring and PostgreSQL. CRoaring
# and libpq are optional: without one, its peer prints "skipped". Their flags go to
# this binary only; a stamp rebuilds peers.o when a library appears or goes.
PEERS_ROARING := $(if $(wildcard /usr/include/roaring/roaring.h),1,)
PEERS_PQ   := $(shell pkg-config --exists libpq 2>/dev/null && echo 1)
PEERS_DEFS := $(if $(PEERS_ROARING),-DHAVE_ROARING) \
              $(if $(PEERS_PQ),-DHAVE_LIBPQ $(patsubst -I%,-isystem %,$(shell pkg-config --cflags libpq)))
PEERS_LIBS := $(if $(PEERS_ROARING),-lroaring) $(if $(PEERS_PQ),$(shell pkg-config --libs libpq))
PEERS_OBJ  := $(BUILD)/bench/peers.o $(BUILD)/bench/data.o
GATE_OBJ   := $(BUILD)/bench/gate.o $(BUILD)/bench/data.o
$(BUILD)/bench/peers.o: ALL_CFLAGS += $(PEERS_DEFS)
$(BUILD)/bench/peers.o: $(BUILD)/bench/peers.flags
$(BUILD)/bench/peers.flags: FORCE
	@mkdir -p $(dir $@)
	@echo '$(strip $(PEERS_DEFS))' | cmp -s - $@ || echo '$(strip $(PEERS_DEFS))' > $@
$(BUILD)/bench/gate: $(GATE_OBJ) $(PURE_OBJ) $(BLOB_OBJ)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/bench/peers: $(PEERS_OBJ) $(PURE_OBJ) $(BLOB_OBJ)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS_ALL) $(PEERS_LIBS)
FORCE:

# bench/loadgen: the open-loop HTTP load generator (latency from intended send time).
$(BUILD)/bench/loadgen: $(BUILD)/bench/loadgen.o
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/api/%.o: ALL_CFLAGS += -I$(LLHTTP_INC)

unit: $(BUILD)/unit
	./$(BUILD)/unit

link-test: $(BUILD)/link_test
	$(LINK_TEST_ENV) ./$(BUILD)/link_test

integration: $(BUILD)/huiqid $(BUILD)/tests/failmalloc.so $(BUILD)/tests/netshim.so
	python3 tests/integration/run.py --huiqid $(BUILD)/huiqid

SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
asan:
	$(MAKE) BUILD=build-asan SAN="$(SANFLAGS)" OPT=-O1 all

test-asan: asan
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ./build-asan/unit
	$(LINK_TEST_ENV) ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    ./build-asan/link_test
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    python3 tests/integration/run.py --huiqid build-asan/huiqid --sanitized

# Memcheck over the plain build: the unit and link tests, then the integration
# suite with huiqid under tests/valgrind_huiqid.sh (any memcheck error or definite
# leak exits 99, a failed stop), except the allocation-failure tests, whose shim
# valgrind's allocator bypasses (they run under ASan in `make test`). Not part of
# `make test` (about 10 more minutes on 2 cores); .ci/run runs it after.
VALGRIND := valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
            --show-leak-kinds=definite --num-callers=25
test-valgrind: deps
	@./deploy/install-deps.sh --valgrind
	$(MAKE) all
	$(VALGRIND) ./$(BUILD)/unit
	$(LINK_TEST_ENV) $(VALGRIND) ./$(BUILD)/link_test
	HUIQID=$(CURDIR)/$(BUILD)/huiqid python3 tests/integration/run.py \
	    --huiqid tests/valgrind_huiqid.sh --valgrind

# The reliability checklist's long runs at full size (tests/integration/run.py
# LONG_TESTS): many trials, minutes-long storms and bulk pushes with kills. Not part
# of `make test` (which runs the quick versions); .ci/run runs it.
reliability: deps
	$(MAKE) all
	python3 tests/integration/run.py --huiqid $(BUILD)/huiqid --long -v

test: deps
	$(MAKE) all
	./$(BUILD)/unit
	$(LINK_TEST_ENV) ./$(BUILD)/link_test
	python3 tests/integration/run.py --huiqid $(BUILD)/huiqid
	$(MAKE) test-asan

# The fuzz build: clang's libFuzzer with ASan and UBSan (tests/fuzz/README.md). Three
# harnesses link the same objects, the whole API with the in-memory fake store
# (store/fake.c) in place of the Redis one:
#   fuzz_http  raw bytes -> api/httpd.c (pre-filter, llhttp, caps) -> routing; no loop
#   fuzz_json  a request body -> the JSON decoder and the body validators
#   fuzz_api   the whole server, fed through a socketpair
# Seeds are copied into build-fuzz/corpus-<harness>, where each corpus grows, so
# tests/fuzz keeps only the hand-written seeds (fuzz_http also starts from the
# whole-API seeds, which are HTTP too). FUZZ_SECONDS is per harness; each harness
# has its own variable too. `make fuzz` runs them one after the other, one process
# at a time.
FUZZ_BUILD   := build-fuzz
FUZZ_SECONDS ?= 600
FUZZ_HTTP_SECONDS ?= $(FUZZ_SECONDS)
FUZZ_JSON_SECONDS ?= $(FUZZ_SECONDS)
FUZZ_API_SECONDS  ?= $(FUZZ_SECONDS)
FUZZ_SAN     := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all \
                -fno-omit-frame-pointer
FUZZ_LIB_SRC := $(filter-out api/main.c,$(API_SRC)) $(PUSH_SRC) $(PURE_SRC) store/mirror.c \
                store/fake.c store/fake_rec.c store/fake_push.c store/fake_read.c
FUZZ_HARNESSES := fuzz_http fuzz_json fuzz_api
FUZZ_FLAGS   := -dict=tests/fuzz/http.dict -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
                -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/artifacts/
$(FUZZ_HARNESSES:%=$(BUILD)/%): $(BUILD)/%: $(BUILD)/tests/fuzz/%.o \
                                $(FUZZ_LIB_SRC:%.c=$(BUILD)/%.o) $(LLHTTP_OBJ) $(BLOB_OBJ)
	$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS_ALL)

fuzz-build:
	@./deploy/install-deps.sh --fuzz
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=clang OPT=-O1 SAN="$(FUZZ_SAN)" \
	    $(FUZZ_HARNESSES:%=$(FUZZ_BUILD)/%)

# Harness $(1)'s start: its seeds $(2) copied into its corpus, then every input that
# once crashed any harness replayed (regressions; bytes are valid input to all three).
define FUZZ_PREP
	mkdir -p $(FUZZ_BUILD)/corpus-$(1) $(FUZZ_BUILD)/artifacts
	cp $(2) $(FUZZ_BUILD)/corpus-$(1)/
	UBSAN_OPTIONS=print_stacktrace=1 ./$(FUZZ_BUILD)/fuzz_$(1) $(FUZZ_FLAGS) tests/fuzz/crashes/*
endef

# One harness ($(1)): FUZZ_PREP, then $(2) seconds of fuzzing from seeds $(3).
define FUZZ_RUN
	$(call FUZZ_PREP,$(1),$(3))
	UBSAN_OPTIONS=print_stacktrace=1 ./$(FUZZ_BUILD)/fuzz_$(1) $(FUZZ_FLAGS) \
	    -max_total_time=$(2) $(FUZZ_BUILD)/corpus-$(1)
endef

FUZZ_HTTP_SEEDS := tests/fuzz/corpus/* tests/fuzz/corpus-http/*
fuzz-http: fuzz-build
	$(call FUZZ_RUN,http,$(FUZZ_HTTP_SECONDS),$(FUZZ_HTTP_SEEDS))

fuzz-json: fuzz-build
	$(call FUZZ_RUN,json,$(FUZZ_JSON_SECONDS),tests/fuzz/corpus-json/*)

fuzz-api: fuzz-build
	$(call FUZZ_RUN,api,$(FUZZ_API_SECONDS),tests/fuzz/corpus/*)

# One harness after the other, never two at once (not even under make -j).
fuzz:
	$(MAKE) fuzz-http
	$(MAKE) fuzz-json
	$(MAKE) fuzz-api

# The parser harness by count rather than time (reliability checklist B6: 10 M
# executions per CI run, 100 M in a long run): FUZZ_HTTP_RUNS in all, over
# FUZZ_WORKERS processes at once (tests/fuzz/runs.sh), after the crash replay.
FUZZ_HTTP_RUNS ?= 10000000
FUZZ_WORKERS   ?= $(shell nproc)
fuzz-http-runs: fuzz-build
	$(call FUZZ_PREP,http,$(FUZZ_HTTP_SEEDS))
	FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_FLAGS="$(FUZZ_FLAGS)" \
	    ./tests/fuzz/runs.sh http $(FUZZ_HTTP_RUNS) $(FUZZ_WORKERS)

# 100 M executions of the parser harness (about 35 min on two cores).
fuzz-long:
	$(MAKE) fuzz-http-runs FUZZ_HTTP_RUNS=100000000

# For CI (.ci/run): 10 M executions of the parser harness (3-4 min on two cores),
# then 20 s of fuzz_json and 50 s of fuzz_api.
fuzz-smoke:
	$(MAKE) fuzz-http-runs FUZZ_HTTP_RUNS=10000000
	$(MAKE) fuzz-json FUZZ_JSON_SECONDS=20
	$(MAKE) fuzz-api FUZZ_API_SECONDS=50

# bench/run.sh installs what it needs, builds, runs bench and the peers, load-tests
# huiqid against nginx and writes docs/benchmarks.md (raw lines: var/bench/last-run.txt).
bench:
	BUILD=$(BUILD) MAKE="$(MAKE)" ./bench/run.sh

# The performance gate: callgrind's instruction counts in the matcher's hot paths
# against bench/gate-baseline.txt (bench/gate.sh); deterministic, so CI runs it.
perf-gate: deps
	@./deploy/install-deps.sh --valgrind
	$(MAKE) $(BUILD)/bench/bench $(BUILD)/bench/gate $(BUILD)/huiqid
	BUILD=$(BUILD) ./bench/gate.sh
	BUILD=$(BUILD) ./bench/gate_http.sh

bench-smoke:
	BUILD=$(BUILD) MAKE="$(MAKE)" BENCH_N=50000 BENCH_POLICIES=200 BENCH_PG=0 \
	    BENCH_DURATION=3s BENCH_WARMUP=1s BENCH_REPORT=var/bench/smoke/benchmarks.md \
	    BENCH_RAW=var/bench/smoke/last-run.txt BENCH_CMD="make bench-smoke" ./bench/run.sh

# Load and soak tests over HTTP (bench/load.sh): wrk at 256 connections, the
# open-loop generator at 80% of its maximum, 1,000 slow connections, a soak.
load:
	BUILD=$(BUILD) MAKE="$(MAKE)" LOAD_SOAK=0 ./bench/load.sh

soak:
	BUILD=$(BUILD) MAKE="$(MAKE)" LOAD_STEPS=0 LOAD_OUT=var/load/soak ./bench/load.sh

# The push pipeline at city scale (bench/push_bench.py): 100k policy.matched
# deliveries and a package.batch push to everyone, nginx as the receiver.
push-bench:
	BUILD=$(BUILD) python3 bench/push_bench.py

load-smoke:
	BUILD=$(BUILD) MAKE="$(MAKE)" LOAD_N=20000 LOAD_NP=20 LOAD_DURATION=3 LOAD_RUNS=1 SOAK_SECONDS=20 \
	    LOAD_SLOW_CONNS=200 LOAD_OUT=var/load/smoke ./bench/load.sh

run: deps all
	./deploy/run.sh $(BUILD)/huiqid

format:
	@./deploy/install-deps.sh --lint
	clang-format -i $$(git ls-files '*.c' '*.h')

check-format:
	@./deploy/install-deps.sh --lint
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

# comparePointers: the embedded files' bounds (huiqi_default_*_end - huiqi_default_*)
# are two symbols the linker places around one object, which cppcheck cannot know.
# memleak in test_matcher.c: an ASSERT that fails returns before the frees, and
# the test binary exits with the failure.
lint:
	@./deploy/install-deps.sh --lint
	cppcheck --error-exitcode=1 --quiet --enable=warning,performance,portability \
	    --suppress=missingIncludeSystem --suppress=comparePointers \
	    --suppress=memleak:tests/test_matcher.c -I. $$(git ls-files '*.c')

clean:
	rm -rf build build-asan build-fuzz

-include $(wildcard $(BUILD)/*/*.d $(BUILD)/*/*/*.d)
