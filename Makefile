# hako: a Docker classroom in one Go binary.
# Run as root on Linux. `make run` builds and starts hako; `make test` installs
# what the tests need (Debian packages via apt-get) and runs them.

GO      ?= go
BIN     ?= bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
export CGO_ENABLED := 1

# Debian packages: busybox-static builds the offline test image;
# docker-registry is the reference registry the push/pull tests use on
# 127.0.0.1 (apache2-utils makes its htpasswd file); skopeo and podman are
# the real tools the interop script checks hako against; crun and runc are the anchors `make bench` compares against.
TEST_PKGS  := busybox-static docker-registry apache2-utils skopeo podman wrk
BENCH_PKGS := crun runc

.PHONY: all build run test bench images deps bench-deps clean

all: build

# hako is the CLI (cgo: its exec joins namespaces from a C constructor);
# hako-monitor, beside it, is the small static per-container monitor.
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/hako ./cmd/hako
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/hako-monitor ./cmd/hako-monitor
	ln -sf hako $(BIN)/docker

# Install Debian packages that are missing (every CI machine starts fresh).
deps:
	@bash testdata/apt-ensure.sh $(TEST_PKGS)

bench-deps:
	@bash testdata/apt-ensure.sh $(TEST_PKGS) $(BENCH_PKGS)

# busybox:latest as a docker-archive, built from Debian's busybox-static, so
# that the demo and the tests never download an image.
images: deps
	$(GO) run ./cmd/hako-mkfixture -o $(BIN)/busybox.tar -t busybox:latest

run: build images
	$(BIN)/hako --help
	$(BIN)/hako load -i $(BIN)/busybox.tar
	$(BIN)/hako run --rm busybox echo hello

test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 8m ./...

bench: build bench-deps
	$(GO) run ./cmd/hako-bench -hako $(BIN)/hako

clean:
	rm -rf $(BIN)
