# husk: build, demo, test. Every target runs as root on a Debian 12 machine.

CARGO ?= cargo
DEB_PACKAGES := busybox-static runc crun nftables iptables iproute2 procps util-linux python3 \
	podman conmon containerd containernetworking-plugins

.PHONY: all build release deps demo test unit conformance lint clean-machine

all: build

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release -p husk

# What the tests and the demo need from Debian (idempotent; skipped when all are installed).
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# A networked busybox httpd behind a forwarded port, inside a throwaway network namespace.
demo: deps release
	bundle-examples/web/demo.sh target/release/husk

# The whole suite: unit tests, then root tests that run real containers.
test: deps build
	$(CARGO) test --workspace --no-fail-fast -- --test-threads=$${HUSK_TEST_THREADS:-4}

unit:
	$(CARGO) test --workspace --lib

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
