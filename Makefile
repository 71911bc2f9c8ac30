# nexus — a thin wrapper over CMake.
#
#   make                 deps + configure + build into build/
#   make run             build, then build/bin/nexus examples/hello.lua
#   make test            build, then luajit spec/run.lua (one process per spec)
#   make bench           build, then bash bench/run.sh
#   make fuzz            build the libFuzzer harness, fuzz FUZZ_SECONDS (60)
#   make valgrind        memcheck over a subset of the specs (VALGRIND=1 for all)
#   make soak            10 minutes of mixed load, RSS and fds sampled (not in CI)
#   make install         cmake --install build [PREFIX=/usr/local]
#   make install-rock    luarocks make the rockspec [ROCKS_TREE=dir]
#   make clean
#
# SANITIZE=address,undefined builds into build-san/ with -fsanitize=... and
# runs the tests with the sanitizer runtimes preloaded into luajit, since a
# sanitized core.so cannot be loaded into the unsanitized /usr/bin/luajit
# otherwise. BUILD=dir overrides the build directory.

SANITIZE ?=
ifeq ($(strip $(SANITIZE)),)
BUILD ?= build
else
BUILD ?= build-san
endif
CMAKE_BUILD_TYPE ?= RelWithDebInfo
JOBS ?= 2
CC ?= gcc
LUAJIT ?= luajit
ROCKSPEC := rockspec/nexus-scm-1.rockspec

ABS_BUILD := $(abspath $(BUILD))

DEB_PACKAGES := luajit libluajit-5.1-dev libuv1-dev lua-busted luarocks \
	lua-luv lua-cqueues lua-copas pkg-config cmake gcc make \
	libssl-dev openssl libwslay-dev libcurl4-openssl-dev python3 python3-websockets curl \
	lua-http nghttp2-server

# Environment of the test, run and bench commands: the tree's Lua files and
# the build's C module come before the system's (";;" keeps the defaults).
NEXUS_ENV := \
	NEXUS_BUILD='$(ABS_BUILD)' \
	NEXUS_BIN='$(ABS_BUILD)/bin/nexus' \
	LUA_PATH='$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;' \
	LUA_CPATH='$(ABS_BUILD)/lib/?.so;;'

# VALGRIND=1: every spec process under valgrind's memcheck (spec/run.lua).
ifeq ($(strip $(VALGRIND)),1)
NEXUS_ENV += NEXUS_VALGRIND=1
endif

ifneq ($(strip $(SANITIZE)),)
# The sanitizer runtimes must come first in the process: preload them.
SAN_LIBS := $(if $(findstring address,$(SANITIZE)),$(shell $(CC) -print-file-name=libasan.so)) \
	$(if $(findstring undefined,$(SANITIZE)),$(shell $(CC) -print-file-name=libubsan.so))
# Leak checking is off: the host luajit (and busted) never free everything,
# and LuaJIT's own allocator is invisible to LSan anyway.
ASAN_OPTIONS ?= detect_leaks=0:abort_on_error=1
UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1
NEXUS_ENV += \
	LD_PRELOAD='$(strip $(SAN_LIBS))' \
	ASAN_OPTIONS='$(ASAN_OPTIONS)' \
	UBSAN_OPTIONS='$(UBSAN_OPTIONS)'
endif

# The fuzzer (docs/fuzzing.md): clang with libFuzzer, ASan and UBSan, built
# into build-fuzz/; FUZZ_SECONDS bounds the run.
FUZZ_SECONDS ?= 60
FUZZ_BUILD ?= build-fuzz
FUZZ_PACKAGES := clang libclang-rt-14-dev

.PHONY: all deps build run test bench install install-rock clean fuzz valgrind soak

all: build

deps:
	@bash tools/apt-ensure.sh $(DEB_PACKAGES)

build: deps
	cmake -S . -B '$(BUILD)' -DCMAKE_BUILD_TYPE=$(CMAKE_BUILD_TYPE) -DSANITIZE='$(SANITIZE)'
	cmake --build '$(BUILD)' -j$(JOBS)

run: build
	$(NEXUS_ENV) '$(BUILD)/bin/nexus' examples/hello.lua

test: build
	$(if $(filter 1,$(VALGRIND)),@bash tools/apt-ensure.sh valgrind)
	$(NEXUS_ENV) $(LUAJIT) spec/run.lua $(SPECS)

# memcheck over the specs that exercise most of the C core (a few minutes;
# the whole suite is make test VALGRIND=1: see docs/testing.md).
VALGRIND_SPECS ?= spec/task_spec.lua spec/runtime_spec.lua spec/channel_spec.lua \
	spec/bytes_spec.lua spec/mpsc_spec.lua spec/cancel_spec.lua spec/time_spec.lua \
	spec/pool_spec.lua spec/tcp_spec.lua spec/udp_spec.lua spec/dns_spec.lua \
	spec/world_spec.lua spec/thread_spec.lua spec/fuzz_harness_spec.lua \
	spec/select_spec.lua spec/select_more_spec.lua spec/group_spec.lua spec/sync_spec.lua \
	spec/coop_spec.lua spec/introspect_spec.lua \
	spec/tls_spec.lua spec/http_client_spec.lua spec/process_spec.lua spec/luv_spec.lua \
	$(wildcard spec/regress_*_spec.lua)
valgrind:
	$(MAKE) test VALGRIND=1 SPECS='$(VALGRIND_SPECS)'

# The soak (bench/soak.lua, docs/BENCHMARKS.md): mixed load for
# SOAK_SECONDS, RSS and descriptors sampled; fails if they grow.
SOAK_SECONDS ?= 600
soak: build
	$(NEXUS_ENV) SOAK_SECONDS=$(SOAK_SECONDS) $(LUAJIT) bench/soak.lua

fuzz: deps
	@bash tools/apt-ensure.sh $(FUZZ_PACKAGES)
	cmake -S . -B '$(FUZZ_BUILD)' -DCMAKE_C_COMPILER=clang -DNEXUS_FUZZ=ON -DSANITIZE=address,undefined
	cmake --build '$(FUZZ_BUILD)' -j$(JOBS) --target nexus_fuzz
	bash fuzz/run.sh '$(FUZZ_BUILD)/bin/nexus_fuzz' '$(FUZZ_SECONDS)'

bench: build
	$(NEXUS_ENV) bash bench/run.sh

install: build
	cmake --install '$(BUILD)' $(if $(PREFIX),--prefix '$(PREFIX)')

# luarocks 3.8 (Debian) finds LuaJIT as the 5.1 interpreter and the 5.1
# headers by itself; the CMake build takes LuaJIT's from pkg-config. So the
# bare command works as it is:
#   luarocks --lua-version=5.1 make rockspec/nexus-scm-1.rockspec
# (add --tree=DIR or --local to choose where it goes).
install-rock: deps
	luarocks --lua-version=5.1 $(if $(ROCKS_TREE),--tree='$(ROCKS_TREE)') make $(ROCKSPEC)

clean:
	rm -rf build build-san build-fuzz build.luarocks '$(BUILD)'
