#!/usr/bin/env bash
# Make sure a Docker engine answers and gradekit's grading images are built. Idempotent.
#
#   scripts/ensure-docker.sh [--light|--full|--both|--no-image]
#
#   --light     build only the image without torch (what tests/docker uses)
#   --full      build only the image with torch 2.14.1 (what grading uses by default)
#   --both      both (the default)
#   --no-image  engine only
#
# Steps: install Debian's docker.io when no engine is installed, start dockerd in the
# background (setsid) when none answers, wait for `docker info`, provide the base image
# debian:bookworm-slim (pull, or debootstrap + import when nothing can be pulled), then build
# the grading image(s) when missing or stale (content-addressed tags).
# When it cannot do a step (not root, not Debian), it prints exactly what the user must do
# and exits non-zero.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
WHAT="${1:---both}"
LOG="${GRADEKIT_DOCKERD_LOG:-/var/log/gradekit-dockerd.log}"

SETUP_NAME=ensure-docker
# shellcheck source=setup-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup-lib.sh"

# Debian's client first: it builds with DOCKER_BUILDKIT=1 without the buildx plugin.
pick_client() {
    if [ -n "${GRADEKIT_DOCKER:-}" ]; then echo "$GRADEKIT_DOCKER"; return; fi
    if [ -x /usr/bin/docker ]; then echo /usr/bin/docker; return; fi
    command -v docker 2>/dev/null || true
}

engine_answers() {
    local cli; cli="$(pick_client)"
    [ -n "$cli" ] && timeout 20 "$cli" info >/dev/null 2>&1
}

# 1. An engine that answers ------------------------------------------------------------
if ! engine_answers; then
    if ! command -v dockerd >/dev/null 2>&1; then
        if ! is_root || ! is_debian; then
            fail "no Docker engine answers and none is installed, and this script can only install one as root on Debian/Ubuntu." \
                 "Install Docker Engine yourself: https://docs.docker.com/engine/install/" \
                 "  (Debian/Ubuntu: sudo apt-get install docker.io)" \
                 "start it:  sudo systemctl start docker   (or: sudo dockerd &)" \
                 "let your user use it:  sudo usermod -aG docker \$USER   (then log in again)" \
                 "then run:  $0 $WHAT"
        fi
        say "installing docker.io (Debian's Docker engine)"
        export DEBIAN_FRONTEND=noninteractive
        if ! apt-get install -y -qq docker.io >/dev/null 2>&1; then
            apt-get update -qq >/dev/null
            apt-get install -y -qq docker.io >/dev/null
        fi
    fi
    if ! engine_answers; then
        if ! is_root; then
            fail "Docker is installed but no engine answers (or you may not use it)." \
                 "start it:  sudo systemctl start docker   (or: sudo dockerd &)" \
                 "let your user use it:  sudo usermod -aG docker \$USER   (then log in again)" \
                 "then run:  $0 $WHAT"
        fi
        started=0
        if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
            systemctl start docker >/dev/null 2>&1 && started=1 || true
        fi
        if [ "$started" = 0 ]; then
            if pgrep -x dockerd >/dev/null 2>&1; then
                say "dockerd runs but does not answer yet; waiting"
            else
                say "starting dockerd in the background (log: $LOG)"
                # A daemon killed with its session leaves its pid file; dockerd refuses to
                # start if that pid has since gone to another process.
                rm -f /var/run/docker.pid
                mkdir -p "$(dirname "$LOG")"
                setsid dockerd >>"$LOG" 2>&1 </dev/null &
            fi
        fi
        for _ in $(seq 60); do
            engine_answers && break
            sleep 1
        done
        engine_answers || fail "dockerd did not answer within 60 s; the end of its log ($LOG):" \
            "$(tail -n 15 "$LOG" 2>/dev/null | sed 's/^/  /')"
    fi
fi
CLI="$(pick_client)"
say "engine answers: $("$CLI" version --format 'server {{.Server.Version}}, client {{.Client.Version}}' 2>/dev/null)"

[ "$WHAT" = --no-image ] && exit 0

# 2. The base image and the grading image(s) ------------------------------------------
DOCKER="$CLI" "$HERE/build-base-image.sh"

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY="$(command -v python3)"; fi
fi
export GRADEKIT_DOCKER="$CLI" GRADEKIT_SOURCE="$ROOT"
build() {
    (cd "$ROOT" && "$PY" -c 'import sys; sys.path.insert(0, "."); from gradekit.sandbox.docker.image import main; sys.exit(main(sys.argv[1:]))' build "$@")
}
case "$WHAT" in
    --light) build --light ;;
    --full) build ;;
    --both) build --light && build ;;
    *) fail "unknown option $WHAT" "usage: $0 [--light|--full|--both|--no-image]" ;;
esac
