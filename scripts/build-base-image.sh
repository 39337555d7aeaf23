#!/usr/bin/env bash
# Make sure the image named by $BASE_IMAGE (default debian:bookworm-slim) exists locally.
#
# 1. already present            -> nothing to do
# 2. `docker pull` works        -> use the pulled image
# 3. otherwise (offline machine) -> debootstrap a minimal bookworm from the Debian mirror
#    apt already uses, and `docker import` it under the same name, so that
#    `FROM debian:bookworm-slim` in the Dockerfile builds unchanged.
#
# Idempotent. Needs root (debootstrap) for step 3. Prints what to do when it cannot.
set -euo pipefail

BASE_IMAGE="${BASE_IMAGE:-debian:bookworm-slim}"
SUITE="${SUITE:-bookworm}"
DOCKER="${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}"

log() { printf 'build-base-image: %s\n' "$*" >&2; }

if "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "$BASE_IMAGE is present"
    exit 0
fi

if [ "${GRADEKIT_NO_PULL:-0}" != 1 ]; then
    log "trying: docker pull $BASE_IMAGE"
    if timeout 60 "$DOCKER" pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
        log "pulled $BASE_IMAGE"
        exit 0
    fi
    log "pull failed; building $BASE_IMAGE locally with debootstrap"
fi

if [ "$(id -u)" != 0 ]; then
    cat >&2 <<MSG
build-base-image: cannot pull $BASE_IMAGE and cannot debootstrap it (not root).
  Do one of:
    docker pull $BASE_IMAGE                                  (on a machine with registry access)
    sudo $0                                                  (builds it with debootstrap)
MSG
    exit 1
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        log "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
    else
        log "debootstrap is missing and this is not a Debian-like system: install debootstrap, or docker pull $BASE_IMAGE"
        exit 1
    fi
fi

# The mirror apt already uses (deb822 .sources or one-line .list), else Debian's default.
MIRROR="${DEBIAN_MIRROR:-}"
if [ -z "$MIRROR" ]; then
    MIRROR=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
             | awk '{print $2}' | grep -v -- '-security' | grep -m1 debian || true)
fi
if [ -z "$MIRROR" ]; then
    MIRROR=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
             | awk '{print $2}' | grep -v -- '-security' | grep -m1 debian || true)
fi
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

ROOTFS=$(mktemp -d /tmp/gradekit-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
log "debootstrap --variant=minbase $SUITE from $MIRROR"
start=$(date +%s)
debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || {
    tail -20 "$ROOTFS.log" >&2; rm -f "$ROOTFS.log"; exit 1; }
rm -f "$ROOTFS.log"
# Slim it the way the official -slim image is: no apt lists, caches, docs or man pages.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
       "$ROOTFS"/var/log/*.log "$ROOTFS"/tmp/* 2>/dev/null || true
# apt inside the image uses the same mirror (the image's sources must resolve at build).
printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$MIRROR" "$SUITE" "$SUITE" >"$ROOTFS/etc/apt/sources.list.d/debian.sources"
rm -f "$ROOTFS/etc/apt/sources.list"
tar --numeric-owner -C "$ROOTFS" -c . \
    | "$DOCKER" import --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' \
        --message "debootstrap --variant=minbase $SUITE (gradekit)" - "$BASE_IMAGE" >/dev/null
log "imported $BASE_IMAGE in $(( $(date +%s) - start )) s"
