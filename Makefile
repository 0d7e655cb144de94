# libsamm - the user's entry point.  CMake does the building; this file
# names the builds and runs them.
#
#   make              release build into build/
#   make test         unit tests: release, ASan+UBSan, TSan, then Valgrind
#   make demo         build and run the demo
#   make bench        build and run the benchmarks, the comparison suite included
#   make bench-quick  the same, small and fast: a smoke test that fails only if a
#                     backend crashes or gives wrong counts, never on timing
#   make install PREFIX=/usr/local
#   make clean

PREFIX ?= /usr/local
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE  ?= cmake
CTEST  ?= ctest
VALGRIND := $(shell command -v valgrind 2>/dev/null)
CMAKE_FLAGS ?= -DSAMM_WERROR=ON

# build, build-asan and build-tsan name directories, but are always run.
.PHONY: all build build-asan build-tsan test test-release test-asan test-tsan test-valgrind demo bench bench-quick \
        install clean format

all: build

# Each build is configured on every run (cheap once configured), so a build
# directory made by hand cannot silently miss a flag the suite relies on.
build:
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) \
	    -DSAMM_VALGRIND=$(VALGRIND) -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	$(CMAKE) --build build -j $(JOBS)

build-asan:
	$(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSAMM_SANITIZE=address \
	    -DSAMM_BUILD_BENCH=OFF $(CMAKE_FLAGS) >/dev/null
	$(CMAKE) --build build-asan -j $(JOBS)

build-tsan:
	$(CMAKE) -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSAMM_SANITIZE=thread \
	    -DSAMM_BUILD_BENCH=OFF $(CMAKE_FLAGS) >/dev/null
	$(CMAKE) --build build-tsan -j $(JOBS)

test: test-release test-asan test-tsan test-valgrind
	@echo "make test: release, ASan+UBSan, TSan and Valgrind suites all passed"

test-release: build
	cd build && $(CTEST) --output-on-failure --no-tests=error -j $(JOBS) -L unit

test-asan: build-asan
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    $(CTEST) --output-on-failure --no-tests=error -j $(JOBS) -L unit

test-tsan: build-tsan
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	    $(CTEST) --output-on-failure --no-tests=error -j $(JOBS) -L unit

test-valgrind: build
	@test -n "$(VALGRIND)" || { echo "valgrind not found: install it (apt-get install valgrind)"; exit 1; }
	cd build && $(CTEST) --output-on-failure --no-tests=error -j $(JOBS) -L valgrind

demo: build
	./build/examples/demo

bench: build
	./build/bench/bench_scope
	./build/bench/bench_core
	./build/bench/bench_nested
	./build/bench/bench_alloc
	./build/bench/compare/bench_cmp_runner --results bench/results --docs docs

bench-quick: build
	./build/bench/bench_scope --quick
	./build/bench/bench_core --quick
	./build/bench/bench_nested --quick
	./build/bench/bench_alloc --quick
	./build/bench/compare/bench_cmp_runner --smoke --results bench/results

install: build
	$(CMAKE) --install build --prefix $(PREFIX)

format:
	clang-format -i include/*.h src/*.[ch] tests/*.[ch] bench/*.[ch] bench/compare/*.[ch] \
	    examples/*.c

clean:
	rm -rf build build-asan build-tsan
