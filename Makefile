# medcard — the two commands of the README's quick start are `make demo` and `make test`.
# Both install the Debian packages they need first (`make deps`), so a fresh machine needs
# nothing done by hand. CI (.ci/run) calls `make test`.

SHELL := /bin/bash
CARGO ?= cargo
# Build needs libpcsclite-dev; end-to-end tests need pcscd and vsmartcard's vpcd driver;
# pcsc-tools gives `scriptor`, the independent PC/SC client the tests compare against;
# systemd gives `systemd-analyze`, which verifies the units in systemd/; postgresql is the
# hospital database the tests start as a throwaway cluster (src/sim/postgres.rs; TLS is
# rustls, no system library); chromium and chromium-driver are the headless browser the
# kiosk tests and `medcard bench web` drive through WebDriver (src/sim/browser.rs);
# dpkg-dev (dpkg-shlibdeps, with binutils' strip) and lintian build and check the Debian
# package (`make deb`, packaging/build-deb, tests/suite/package.rs).
DEB_PACKAGES := pcscd libpcsclite-dev vsmartcard-vpcd pcsc-tools pkg-config systemd postgresql openssl chromium chromium-driver fonts-wqy-zenhei dpkg-dev lintian
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps build deb test lint demo bench fault-matrix fuzz fuzz-smoke clean

all: build

deps:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "make deps: system packages present"; fi

build: deps
	$(CARGO) build --release

# The Debian package of the release build: target/debian/medcard_<version>_<arch>.deb
# (docs/packaging.md). tests/suite/package.rs builds its own two with the same script,
# lints them, installs, upgrades and purges them on this machine.
deb: build
	packaging/build-deb

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --features fault-injection -- -D warnings
	$(CARGO) clippy --all-targets -- -D warnings

# The release binary hospitals install (no features: no crash points), then unit tests,
# in-process reader tests and the end-to-end tests through pcscd + vpcd (these take a
# machine-wide lock: one pcscd per machine, two vpcd slots), built with the crash points of
# the exactly-once tests; tests/suite/release_binary.rs checks the release binary has none,
# and tests/suite/package.rs packages it (packaging/build-deb), lints, installs (as root),
# upgrades and purges the package.
test: deps lint
	$(CARGO) build --release
	$(CARGO) test --all-targets --features fault-injection
	$(MAKE) fuzz-smoke

# The exactly-once fault matrix (part of `make test` too), with its table printed.
fault-matrix: deps
	$(CARGO) test --features fault-injection --test suite settle_faults -- --nocapture

# Fuzzing (docs/fuzzing.md): one cargo-fuzz target per parser that input reaches, each an entry
# point of src/fuzzing.rs. The test suite replays fuzz/corpus/ and fuzz/regressions/ always;
# `make fuzz` is the long campaign (FUZZ_RUNS executions of each target, one after another, on
# one core), `make fuzz-smoke` a few seconds of each, run by `make test` when cargo-fuzz is
# installed. The stable toolchain runs cargo-fuzz's -Z flags with RUSTC_BOOTSTRAP=1.
FUZZ_TARGETS ?= apdu_response tlv profile card_image jsonrpc_line insurer_reply config
FUZZ_RUNS ?= 10000000
FUZZ_SECONDS ?= 3
FUZZ_FLAGS := --sanitizer none --debug-assertions
CARGO_FUZZ := RUSTC_BOOTSTRAP=1 $(CARGO) fuzz
fuzz_max_len = $(if $(filter tlv jsonrpc_line,$(1)),2048,$(if $(filter apdu_response,$(1)),4096,16384))
# $(1) target, $(2) libFuzzer's stopping option: new inputs go to fuzz/target/corpus/, the
# committed seeds are read only; findings land in fuzz/artifacts/.
fuzz_run = mkdir -p fuzz/target/corpus/$(1) && \
	$(CARGO_FUZZ) run $(FUZZ_FLAGS) $(1) fuzz/target/corpus/$(1) fuzz/corpus/$(1) -- \
	  -max_len=$(call fuzz_max_len,$(1)) -timeout=10 -rss_limit_mb=2048 \
	  -print_final_stats=1 $(2)

fuzz:
	@command -v cargo-fuzz >/dev/null || { echo "make fuzz: needs cargo-fuzz (cargo install cargo-fuzz)"; exit 1; }
	set -o pipefail; $(foreach t,$(FUZZ_TARGETS),$(call fuzz_run,$(t),-runs=$(FUZZ_RUNS)) 2>&1 | tee fuzz/target/$(t).log && ) true

fuzz-smoke:
	@if command -v cargo-fuzz >/dev/null; then \
	  $(foreach t,$(FUZZ_TARGETS),$(call fuzz_run,$(t),-max_total_time=$(FUZZ_SECONDS)) && ) true; \
	else echo "make fuzz-smoke: cargo-fuzz not installed, skipped (the test suite replayed fuzz/corpus and fuzz/regressions)"; fi

# A counter's day on embedded defaults: virtual readers, the built-in insurer simulator,
# a SQLite cache and journal; swipe, register, preview, settle, receipt.
demo: build
	./target/release/medcard demo

bench: build
	./target/release/medcard bench read --count 2000
	./target/release/medcard bench serve
	./target/release/medcard bench settle
	./target/release/medcard bench web

clean:
	$(CARGO) clean
