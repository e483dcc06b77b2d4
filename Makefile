# Thin entry points; the logic lives in scripts/ and the Rust crates.
# `make run` boots the default image with its console here; `make test` is what CI runs.

SHELL := /bin/bash
CARGO ?= cargo
TARGET := x86_64-unknown-linux-gnu
RELEASE := $(or $(CARGO_TARGET_DIR),target)/$(TARGET)/release
BERTH_IMAGE := $(RELEASE)/berth-image
# rustup's cargo when it is not on PATH yet (fresh shells, CI).
export PATH := $(PATH):$(HOME)/.cargo/bin
# Each step's wall and CPU time (scripts/timed.sh): one table per make invocation, printed at
# the end of `make test`.
ifndef BERTH_STEP_TIMES
BERTH_STEP_TIMES := $(CURDIR)/out/step-times/$(shell date +%Y%m%d-%H%M%S)-$(shell echo $$PPID).tsv
endif
export BERTH_STEP_TIMES
TIMED := scripts/timed.sh

.PHONY: help deps static image image-test image-test-zfs run test cri-tools test-cri test-uefi test-zfs clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

deps: ## Install the host packages (QEMU, erofs-utils, cpio, kmod…) and check cargo.
	$(TIMED) deps scripts/install-deps.sh

static: ## Build every binary statically into target/x86_64-unknown-linux-gnu/release.
	$(TIMED) static scripts/build-static.sh

image: static ## Build the default image into out/image.
	$(TIMED) image $(BERTH_IMAGE) build --bin-dir $(RELEASE) --out out/image

image-test: static ## Build the test image (with the test agent) into out/image-test.
	$(TIMED) image-test $(BERTH_IMAGE) build --bin-dir $(RELEASE) --test --out out/image-test

image-test-zfs: static ## Build the ZFS test image (dkms-built zfs.ko, cached) into out/image-test-zfs.
	$(BERTH_IMAGE) build --bin-dir $(RELEASE) --test --zfs --out out/image-test-zfs

run: deps static image ## Boot out/image under QEMU, console on this terminal (Ctrl-a x quits).
	scripts/run-qemu.sh out/image

test: deps cri-tools static image image-test ## Host tests, then the QEMU scenarios side by side; every test's and step's time (ZFS: `make test-zfs`).
	scripts/test.sh

# crictl for the CRI host tests, built by Go in the background while cargo builds (its tests
# wait for it); critest only with `make test-cri`.
cri-tools:
	@scripts/build-cri-tools.sh --background out/cri-tools.log crictl

test-cri: deps static ## The CRI host tests with critest (builds critest: minutes on a cold Go cache).
	$(CARGO) test -p berth --test cri -- --include-ignored --nocapture

test-uefi: deps static image-test ## Only the UEFI disk scenario (4 boots: growth, A/B upgrade, rollback; ~95 s).
	$(CARGO) run -q -p berth-qemu-tests --bin berth-test-run -- uefi::

test-zfs: deps static image-test-zfs ## The ZFS scenarios side by side: pool, snapshotter and container run; the whole conformance suite (docs/zfs.md).
	$(CARGO) run -q -p berth-qemu-tests --bin berth-test-run -- --include-ignored zfs::zfs_pool zfs::zfs_full

.PHONY: bench
bench: deps static image-test-zfs ## Benchmarks against containerd (root, ratios): import+unpack, registry pull+unpack, run --rm true; ZFS Prepare+Commit with 10/100/1000 snapshots (QEMU).
	$(CARGO) test --release -p berth-engine --test bench_import -- --ignored --nocapture
	$(CARGO) test --release -p berth-engine --test bench_pull -- --ignored --nocapture
	$(CARGO) test --release -p berth-engine --test bench_run -- --ignored --nocapture
	$(CARGO) test -p berth-qemu-tests --test zfs -- --ignored --test-threads=1 --nocapture zfs_bench

clean: ## Remove out/ and cargo's build output.
	rm -rf out
	$(CARGO) clean
