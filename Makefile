# medcard — the two commands of the README's quick start are `make demo` and `make test`.
# Both install the Debian packages they need first (`make deps`), so a fresh machine needs
# nothing done by hand. CI (.ci/run) calls `make test`.

SHELL := /bin/bash
CARGO ?= cargo
# Build needs libpcsclite-dev; end-to-end tests need pcscd and vsmartcard's vpcd driver;
# pcsc-tools gives `scriptor`, the independent PC/SC client the tests compare against;
# systemd gives `systemd-analyze`, which verifies the units in systemd/.
DEB_PACKAGES := pcscd libpcsclite-dev vsmartcard-vpcd pcsc-tools pkg-config systemd
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps build test lint demo bench fault-matrix clean

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

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --features fault-injection -- -D warnings

# The release binary hospitals install (no features: no crash points), then unit tests,
# in-process reader tests and the end-to-end tests through pcscd + vpcd (these take a
# machine-wide lock: one pcscd per machine, two vpcd slots), built with the crash points of
# the exactly-once tests; tests/suite/release_binary.rs checks the release binary has none.
test: deps lint
	$(CARGO) build --release
	$(CARGO) test --all-targets --features fault-injection

# The exactly-once fault matrix (part of `make test` too), with its table printed.
fault-matrix: deps
	$(CARGO) test --features fault-injection --test suite settle_faults -- --nocapture

# A counter's day on embedded defaults: virtual readers, the built-in insurer simulator,
# a SQLite cache and journal; swipe, register, preview, settle, receipt.
demo: build
	./target/release/medcard demo

bench: build
	./target/release/medcard bench read --count 2000
	./target/release/medcard bench serve
	./target/release/medcard bench settle

clean:
	$(CARGO) clean
