# logitpair — build, test and developer tasks.
#
#   make demo        install what is needed, run the small local demo
#   make test        install what is needed, run everything CI runs
#   make test-short  the quick loop (go test -short, no vet)
#   make lint        go vet + staticcheck (pinned, fetched via the module proxy)
#   make build       binaries into bin/
#   make static      fully static binaries (OpenBLAS linked in) into bin/static/
#   make images      FROM-scratch container images (make compose-test: the fault-injection test)
#   make bench       engine benchmark against PyTorch (needs python3-torch)
#   make fuzz        every fuzz target for FUZZTIME (15s) each (make test runs their seed corpora)
#   make golden      regenerate PyTorch fixtures (developer-time; needs python3-torch)

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

# Go from PATH, else the standard tarball location. The recipes also get
# /usr/local/go/bin appended to PATH (GNU make 4.3's $(shell) does not see
# exported variables, hence the explicit fallback for GO).
export PATH := $(PATH):/usr/local/go/bin
GO ?= $(or $(shell command -v go 2>/dev/null),/usr/local/go/bin/go)
GOFMT ?= $(or $(shell command -v gofmt 2>/dev/null),/usr/local/go/bin/gofmt)
PYTHON ?= /usr/bin/python3

# Debian packages needed to build (cgo + OpenBLAS) and to generate protobufs;
# prometheus (with promtool) for the metrics tests (pkg/metrics, pkg/node);
# chromium (and a font) for the status page's browser tests (pkg/statuspage);
# g++ builds the CUDA backend's host emulator where there is no GPU
# (pkg/tensor/cuda/testdata/fakecuda).
APT_PACKAGES := libopenblas-dev protobuf-compiler gcc g++ libc6-dev prometheus chromium fonts-dejavu-core
SUDO := $(shell if [ "$$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then echo sudo; fi)

TEST_TIMEOUT ?= 35m

# Packages whose numerics are also tested with the pure-Go (gonum) GEMM.
# Patterns whose directory does not exist yet are dropped here, empty ones by
# go list. Recursively expanded, so go list only runs when a recipe needs it.
NUMERIC_PATTERNS := ./pkg/gemm/... ./pkg/tensor/... ./pkg/nn/... ./pkg/models/...
NUMERIC_PKGS = $(if $(NUMERIC_DIRS),$(shell $(GO) list -e $(NUMERIC_DIRS) 2>/dev/null))
NUMERIC_DIRS = $(foreach p,$(NUMERIC_PATTERNS),$(if $(wildcard $(p:/...=)),$(p)))

# Pinned staticcheck, run through the module proxy. v0.7.0 is Staticcheck
# 2026.1, the first release that supports Go 1.26 (new(expr) etc.).
STATICCHECK_VERSION ?= v0.7.0

# What `make demo` runs: a local cluster on loopback (4 workers of which 1
# backup, 2 parameter-server shards, each a separate process) training ALP on
# MNIST with the fast demo recipe (configs/mnist-demo-alp.yaml), then the
# strong suite at a reduced budget on 500 test images: APGD-CE and APGD-DLR
# (50 steps × 2 restarts), targeted APGD, Square (300 queries) and the masking
# checks; it ends with the one-line result naming those attacks.
DEMO_OUT ?= runs/demo
DEMO_CONFIG ?= configs/mnist-demo-alp.yaml
DEMO_CLUSTER_ARGS ?= --config $(DEMO_CONFIG) --workers 4 --backups 1 --ps 2 --out $(DEMO_OUT)
DEMO_EVAL_ARGS ?= --suite strong --dataset mnist --data-dir data/mnist --examples 500 --eps 0.3 --steps 50 \
	--restarts 2 --square-queries 300 --square-examples 200 --check-examples 100 \
	--report $(DEMO_OUT)/report --json $(DEMO_OUT)/eval.json

# Static linking: the directory holding libopenblas.a, found by glob so it is
# not tied to one architecture (Debian: /usr/lib/<multiarch>/openblas-pthread).
MULTIARCH = $(shell gcc -print-multiarch 2>/dev/null)
OPENBLAS_LIBDIR ?= $(patsubst %/libopenblas.a,%,$(firstword $(wildcard \
	/usr/lib/$(MULTIARCH)/openblas-pthread/libopenblas.a \
	/usr/lib/*/openblas-pthread/libopenblas.a \
	/usr/lib/$(MULTIARCH)/libopenblas.a \
	/usr/lib/*/libopenblas.a \
	/usr/lib/libopenblas.a)))
STATIC_CGO_LDFLAGS = -L$(OPENBLAS_LIBDIR) -l:libopenblas.a -lm -lpthread
# static also leaves out the CUDA backend (pkg/tensor/cuda), which dlopens
# the driver: dlopen does not work in a static glibc binary.
STATIC_TAGS := netgo,osusergo,static
STATIC_LDFLAGS := -linkmode external -extldflags "-static"

.PHONY: all deps build test test-short fmt-check vet go-test go-test-short \
	purego-test purego-test-short nocgo-build lint demo bench fuzz static golden clean

all: build

## deps: install system packages (only if missing) and Go modules.
deps:
	@if ! command -v dpkg >/dev/null 2>&1; then \
		echo "deps: no dpkg (not Debian/Ubuntu); install by hand: $(APT_PACKAGES)" >&2; \
	elif ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		echo "deps: installing $(APT_PACKAGES)"; \
		$(SUDO) apt-get update; \
		rcd=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
			echo "deps: a temporary /usr/sbin/policy-rc.d keeps the packages' services (prometheus) from starting"; \
			printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee /usr/sbin/policy-rc.d >/dev/null; \
			$(SUDO) chmod 755 /usr/sbin/policy-rc.d; rcd=1; \
		fi; \
		status=0; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(APT_PACKAGES) || status=$$?; \
		if [ -n "$$rcd" ]; then $(SUDO) rm -f /usr/sbin/policy-rc.d; fi; \
		exit $$status; \
	fi
	$(GO) mod download

## build: all binaries into bin/.
build: deps
	$(GO) build -o bin/ ./cmd/...

## test: everything CI runs.
test: deps proto-check fmt-check vet go-test purego-test nocgo-build

## proto: regenerate the committed gRPC code in pkg/api from proto/.
## proto-check: fail if pkg/api differs from what proto/ generates (no writes).
## Both use protoc from PATH and the plugin versions pinned in go.mod (tool).
.PHONY: proto proto-check
proto: deps
	bash scripts/gen-proto.sh

proto-check: deps
	bash scripts/gen-proto.sh --check

## test-short: the quick loop.
test-short: deps fmt-check go-test-short purego-test-short nocgo-build

# gofmt, except generated protobuf code and testdata.
fmt-check:
	@files=$$($(GOFMT) -l . | grep -Ev '\.pb\.go$$|(^|/)testdata/' || true); \
	if [ -n "$$files" ]; then \
		echo "gofmt: these files are not formatted (run gofmt -w on them):"; \
		echo "$$files"; \
		exit 1; \
	fi

vet: deps
	$(GO) vet ./...

# Default build: cgo + OpenBLAS.
go-test: deps
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

go-test-short: deps
	$(GO) test -count=1 -short -timeout $(TEST_TIMEOUT) ./...

# Pure-Go GEMM (gonum) build of the numeric packages.
purego-test: deps
	@pkgs="$(NUMERIC_PKGS)"; \
	if [ -z "$$pkgs" ]; then echo "purego-test: no numeric packages yet"; exit 0; fi; \
	echo "$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -tags purego $$pkgs"; \
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -tags purego $$pkgs

purego-test-short: deps
	@pkgs="$(NUMERIC_PKGS)"; \
	if [ -z "$$pkgs" ]; then echo "purego-test-short: no numeric packages yet"; exit 0; fi; \
	echo "$(GO) test -count=1 -short -timeout $(TEST_TIMEOUT) -tags purego $$pkgs"; \
	$(GO) test -count=1 -short -timeout $(TEST_TIMEOUT) -tags purego $$pkgs

# Prove that everything compiles without cgo.
nocgo-build: deps
	CGO_ENABLED=0 $(GO) build ./...

## lint: go vet and staticcheck.
lint: deps
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

## demo: a small end-to-end run.
demo: deps
	$(GO) build -o bin/logitpair ./cmd/logitpair
	bin/logitpair data fetch mnist --dir data/mnist
	rm -rf $(DEMO_OUT)
	bin/logitpair cluster local $(DEMO_CLUSTER_ARGS)
	bin/logitpair eval --checkpoint "$(DEMO_OUT)/coordinator/$$(sed -n 's/.*"model": *"\([^"]*\)".*/\1/p' $(DEMO_OUT)/coordinator/latest.json)" $(DEMO_EVAL_ARGS)
	@echo "demo: model checkpoints in $(DEMO_OUT)/coordinator/, process logs in $(DEMO_OUT)/logs/, evaluation report in $(DEMO_OUT)/report/report.md"

## bench: our engine against PyTorch on this machine.
bench:
	bash scripts/bench-vs-torch.sh

## fuzz: run each fuzz target (func FuzzXxx in a *_test.go file) for FUZZTIME,
## one after another (go test takes one -fuzz target per package), and list
## the ones that failed; their failing inputs land in the package's
## testdata/fuzz/FuzzXxx/, where `go test` then replays them. Not part of
## `make test`, which runs the committed seed corpora. FUZZMINIMIZETIME bounds
## the shrinking of each new input (go test's default of 60s would spend a
## short budget on it); FUZZFLAGS adds flags (e.g. -parallel 1). A bare
## "context deadline exceeded" with no failing input written is Go 1.26's
## race at the end of -fuzztime (go.dev/issue/75804, fixed in Go 1.27), not
## a finding: it is reported and not counted.
FUZZTIME ?= 15s
FUZZMINIMIZETIME ?= 20x
FUZZFLAGS ?=
fuzz: deps
	@failed=; out=$$(mktemp); trap 'rm -f "$$out"' EXIT; \
	for f in $$(grep -l '^func Fuzz' $$(find pkg cmd -name '*_test.go' | sort)); do \
		dir=./$$(dirname "$$f"); \
		for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$$f"); do \
			echo "fuzz: $$t in $$dir for $(FUZZTIME)"; \
			if $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) \
				-fuzzminimizetime $(FUZZMINIMIZETIME) $(FUZZFLAGS) "$$dir" 2>&1 | tee "$$out"; then :; \
			elif grep -q 'context deadline exceeded' "$$out" && ! grep -q 'Failing input written' "$$out"; then \
				echo "fuzz: $$t: the fuzzing engine's end-of-budget race (go.dev/issue/75804), no failing input: not counted"; \
			else failed="$$failed $$dir:$$t"; fi; \
		done; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed" >&2; exit 1; fi; \
	echo "fuzz: every target ran $(FUZZTIME) without a failing input"

## static: fully static binaries into bin/static/ (OpenBLAS linked in).
static: deps
	@if [ -z "$(OPENBLAS_LIBDIR)" ]; then \
		echo "static: libopenblas.a not found (Debian: libopenblas-pthread-dev)" >&2; exit 1; \
	fi
	mkdir -p bin/static
	CGO_ENABLED=1 CGO_LDFLAGS="$(STATIC_CGO_LDFLAGS)" \
		$(GO) build -tags $(STATIC_TAGS) -ldflags '$(STATIC_LDFLAGS)' -o bin/static/ ./cmd/...
	@for b in bin/static/*; do \
		if ldd "$$b" >/dev/null 2>&1; then echo "static: $$b is dynamically linked" >&2; exit 1; fi; \
	done; echo "static: $$(ls bin/static | tr '\n' ' ')are statically linked"

## images: FROM-scratch images logitpair/{coordinator,paramserver,worker,logitpair}:dev
## from the static binaries (deploy/docker/Dockerfile; nothing is pulled).
## image-prometheus: logitpair/prometheus:dev from Debian's static prometheus
## binary (the compose profile monitoring). image-gpu: the worker on a
## debootstrapped Debian base (minutes; not in CI).
## compose-test: the compose cluster with a worker and a shard crashed mid-run.
.PHONY: images image-prometheus image-gpu compose-test
images: static
	bash deploy/docker/build.sh

image-prometheus:
	bash deploy/docker/build-prometheus.sh

image-gpu: deps
	bash scripts/gpu-base-image.sh
	OPENBLAS_LIBDIR="$(OPENBLAS_LIBDIR)" bash deploy/docker/build-gpu.sh

compose-test:
	bash scripts/compose-test.sh

## golden: regenerate the PyTorch fixtures (developer-time only).
golden:
	$(PYTHON) scripts/gen-golden.py

clean:
	rm -rf bin/
