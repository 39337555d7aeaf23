#!/usr/bin/env bash
# Make sure Debian's headless Chromium (`chromium`) is on PATH. Idempotent.
#
#   scripts/ensure-chromium.sh
#
# tests/test_feedback_html.py opens feedback.html in it (--headless --dump-dom, --screenshot).
# Installs Debian's `chromium` package when it is missing and we are root on Debian/Ubuntu
# (apt-get update only when the install fails); otherwise prints what to do and exits non-zero.
set -euo pipefail

SETUP_NAME=ensure-chromium
# shellcheck source=setup-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup-lib.sh"

if ! command -v chromium >/dev/null 2>&1; then
    if ! is_root || ! is_debian; then
        fail "chromium is not on PATH, and this script can only install it as root on Debian/Ubuntu." \
             "Debian:  sudo apt-get install chromium" \
             "elsewhere: install Chromium and put a \`chromium\` command on PATH" \
             "then run:  $0"
    fi
    say "installing chromium (Debian's package)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq chromium >/dev/null 2>&1; then
        apt-get update -qq >/dev/null
        apt-get install -y -qq chromium >/dev/null
    fi
    command -v chromium >/dev/null 2>&1 || fail "chromium was installed but is not on PATH"
fi
say "$(chromium --version 2>/dev/null || echo 'chromium (version unknown)')"
