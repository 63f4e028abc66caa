# Cairn — developer entry points. Everything installs what it needs first.
#   make demo   run the end-to-end demo on a fresh data directory
#   make test   build, run all tests (unit, API, Python SDK), then the unit tests under ASan+UBSan
#   make bench  run the benchmarks (JSON lines on stdout)
#   make fuzz   build the libFuzzer targets and run each for FUZZ_SECONDS
#   make format / make lint

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
FUZZ_SECONDS ?= 60
PYTHON     ?= /usr/bin/python3

.PHONY: all setup build build-asan test test-unit test-python test-asan demo bench fuzz format lint clean

all: build

setup:
	@scripts/setup.sh

build: setup
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

build-asan: setup
	@cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
	  -DCMAKE_CXX_COMPILER=clang++ -DCAIRN_SANITIZE=ON -DCAIRN_BENCH=OFF >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

test-unit: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-python: build
	@CAIRN_BIN=$(CURDIR)/$(BUILD)/src/main/cairn $(PYTHON) -m pytest -q python/tests

test-asan: build-asan
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS) -LE no_sanitizer

test: test-unit test-python test-asan

demo: build
	@scripts/demo.sh

# Build output goes to stderr so that stdout carries only the JSON lines.
bench:
	@$(MAKE) --no-print-directory build >&2
	@cmake --build $(BUILD) -j $(JOBS) --target benchmarks >&2
	@scripts/bench.sh

fuzz: setup
	@cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
	  -DCMAKE_CXX_COMPILER=clang++ -DCAIRN_FUZZ=ON -DCAIRN_TESTS=OFF -DCAIRN_BENCH=OFF >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)
	@for f in $(FUZZ_BUILD)/fuzz/*_fuzz; do \
	  echo "== $$f ($(FUZZ_SECONDS)s)"; mkdir -p $(FUZZ_BUILD)/corpus/$$(basename $$f); \
	  seeds=fuzz/corpus/$$(basename $$f _fuzz); [ -d $$seeds ] || seeds=; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $(FUZZ_BUILD)/corpus/$$(basename $$f) $$seeds || exit 1; \
	done

format:
	@find src bench fuzz tests -name '*.h' -o -name '*.cc' | xargs clang-format -i

lint: build
	@find src -name '*.cc' ! -name '*_test.cc' | xargs clang-tidy -p $(BUILD) --quiet

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
