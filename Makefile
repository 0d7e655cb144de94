# SPDX-License-Identifier: MIT
# libsamm - the user's entry point.  CMake does the building; this file
# names the builds and runs them.
#
#   make              release build into build/
#   make test         the test suite in four builds, then under Valgrind
#   make demo         build and run the demo
#   make man          the man pages (needs scdoc), into build/docs/man/man3
#   make bench        the benchmarks: instruction counts and wall-clock ratios
#   make bench-quick  the same, small and fast: a smoke test that fails only if a
#                     backend crashes or gives wrong counts, never on timing
#   make fuzz         the long checks: the model-based random tester (10^8
#                     operations) and the full fault-injection sweep
#   make install PREFIX=/usr/local
#   make clean

SHELL  := /bin/bash
.SHELLFLAGS := -o pipefail -c
PREFIX ?= /usr/local
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE  ?= cmake
CTEST  ?= ctest
VALGRIND := $(shell command -v valgrind 2>/dev/null)
CMAKE_FLAGS ?= -DSAMM_WERROR=ON
QUIET  := --no-print-directory

# The builds: release (what users get: no assertions, no tool hooks), check
# (assertions of internal strength and the ASan/Valgrind hooks; the Valgrind
# suite runs it), asan (ASan+UBSan, expensive assertions) and tsan.
.PHONY: all build build-check build-asan build-tsan test test-release test-check test-asan \
        test-tsan test-valgrind demo man bench bench-quick fuzz install clean format

all: build

# Each build is configured on every run (cheap once configured), so a build
# directory made by hand cannot silently miss a flag the suite relies on.
build:
	@$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) \
	    -DSAMM_DEBUG=0 -DSAMM_TOOL_HOOKS=OFF -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	@$(CMAKE) --build build -j $(JOBS) -- $(QUIET)

build-check:
	@$(CMAKE) -S . -B build-check -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) \
	    -DSAMM_DEBUG=2 -DSAMM_TOOL_HOOKS=ON -DSAMM_BUILD_BENCH=OFF \
	    -DSAMM_VALGRIND=$(VALGRIND) >/dev/null
	@$(CMAKE) --build build-check -j $(JOBS) -- $(QUIET)

build-asan:
	@$(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSAMM_SANITIZE=address \
	    -DSAMM_DEBUG=3 -DSAMM_TOOL_HOOKS=ON -DSAMM_BUILD_BENCH=OFF $(CMAKE_FLAGS) >/dev/null
	@$(CMAKE) --build build-asan -j $(JOBS) -- $(QUIET)

build-tsan:
	@$(CMAKE) -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSAMM_SANITIZE=thread \
	    -DSAMM_DEBUG=2 -DSAMM_BUILD_BENCH=OFF $(CMAKE_FLAGS) >/dev/null
	@$(CMAKE) --build build-tsan -j $(JOBS) -- $(QUIET)

test: test-release test-check test-asan test-tsan test-valgrind
	@echo "make test: release, check, ASan+UBSan, TSan and Valgrind suites all passed"

# CTest, printing the failures and the summary (the passes are one line each
# and there are hundreds).
RUN_CTEST = $(CTEST) --output-on-failure --no-tests=error -j $(JOBS) $(1) \
	| grep -vE '^ +Start |^ *[0-9]+/[0-9]+ Test +\#[0-9]+: .* +Passed +[0-9.]+ sec$$|^$$'

test-release: build
	@echo "== tests: release build"
	@cd build && $(call RUN_CTEST,-L unit)

test-check: build-check
	@echo "== tests: check build (assertions, tool hooks)"
	@cd build-check && $(call RUN_CTEST,-L unit)

test-asan: build-asan
	@echo "== tests: ASan+UBSan"
	@cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(call RUN_CTEST,-L unit)

test-tsan: build-tsan
	@echo "== tests: TSan"
	@cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 $(call RUN_CTEST,-L unit)

test-valgrind: build-check
	@test -n "$(VALGRIND)" || { echo "valgrind not found: install it (apt-get install valgrind)"; exit 1; }
	@echo "== tests: Valgrind memcheck"
	@cd build-check && $(call RUN_CTEST,-L valgrind)

demo:
	@$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@$(CMAKE) --build build -j $(JOBS) --target demo -- $(QUIET)
	./build/examples/demo

man:
	@$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@command -v scdoc >/dev/null || { echo "scdoc not found: apt-get install scdoc"; exit 1; }
	@$(CMAKE) --build build --target man -- $(QUIET)
	@echo "man pages in build/docs/man/man3: man -l build/docs/man/man3/samm.3"

bench: build
	./build/bench/bench_icount
	rm -f bench/results/wallclock.csv
	./build/bench/bench_scope --csv bench/results/wallclock.csv
	./build/bench/bench_core --csv bench/results/wallclock.csv
	./build/bench/bench_nested --csv bench/results/wallclock.csv
	./build/bench/bench_alloc --csv bench/results/wallclock.csv
	./build/bench/bench_background --csv bench/results/background.csv --plot docs/bench-background.svg
	./build/bench/compare/bench_cmp_runner --results bench/results --docs docs

bench-quick: build
	./build/bench/bench_icount --quick
	./build/bench/bench_scope --quick
	./build/bench/bench_core --quick
	./build/bench/bench_nested --quick
	./build/bench/bench_alloc --quick
	./build/bench/bench_background --quick
	./build/bench/compare/bench_cmp_runner --smoke --results bench/results

fuzz: build-check
	@cd build-check && $(CTEST) --output-on-failure -L fuzz

install: build
	$(CMAKE) --install build --prefix $(PREFIX)

format:
	clang-format -i include/*.h src/*.[ch] tests/*.[ch] bench/*.[ch] bench/compare/*.[ch] \
	    examples/*.c

clean:
	rm -rf build build-check build-asan build-tsan
