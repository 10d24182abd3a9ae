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

.PHONY: all build run test bench images bundle deps bench-deps clean

all: build

# hako is the CLI (cgo: its exec joins namespaces from a C constructor);
# hako-monitor, beside it, is the small static per-container monitor;
# hako-learn, beside it, is the lessons (`hako learn`, `check`, `grade`, ...).
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/hako ./cmd/hako
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/hako-learn ./cmd/hako-learn
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/hako-monitor ./cmd/hako-monitor
	ln -sf hako $(BIN)/docker

# Install Debian packages that are missing (every CI machine starts fresh).
deps:
	@bash testdata/apt-ensure.sh $(TEST_PKGS)

bench-deps:
	@bash testdata/apt-ensure.sh $(TEST_PKGS) $(BENCH_PKGS)

# busybox:latest and an httpd:2.4 stand-in as docker-archives, built from
# Debian's busybox-static, so that the course and the tests never download an
# image.
images: deps
	$(GO) run ./cmd/hako-mkfixture -o $(BIN)/busybox.tar -t busybox:latest
	$(GO) run ./cmd/hako-mkfixture -image httpd -o $(BIN)/httpd.tar -t httpd:2.4

# bundle.tar: every image the built-in course needs, as an instructor hands
# it to a classroom without internet (`docker load -i bundle.tar`).
bundle: build images
	rm -rf $(BIN)/.bundle-root
	HAKO_ROOT=$(BIN)/.bundle-root $(BIN)/hako load -i $(BIN)/busybox.tar
	HAKO_ROOT=$(BIN)/.bundle-root $(BIN)/hako load -i $(BIN)/httpd.tar
	HAKO_ROOT=$(BIN)/.bundle-root $(BIN)/hako course images --save $(BIN)/bundle.tar
	rm -rf $(BIN)/.bundle-root

# Build, load the first chapters' images (real ones are pulled when online;
# otherwise the offline stand-ins), and open the course.
run: build images
	@for img in busybox:latest httpd:2.4; do \
		$(BIN)/hako image inspect $$img >/dev/null 2>&1 && continue; \
		timeout 15 $(BIN)/hako pull $$img >/dev/null 2>&1 || $(BIN)/hako load -i $(BIN)/$${img%%:*}.tar; \
	done
	$(BIN)/hako learn --resume

test: deps bundle
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 8m ./...
	$(BIN)/hako course test --bundle $(BIN)/bundle.tar

bench: build bench-deps
	$(GO) run ./cmd/hako-bench -hako $(BIN)/hako

clean:
	rm -rf $(BIN)
