# Shared by the setup scripts (ensure-docker.sh, ensure-chromium.sh): messages and checks.
# Source it after setting SETUP_NAME (the script's name in its messages).

say() { printf '%s: %s\n' "${SETUP_NAME:-setup}" "$*" >&2; }
# fail MESSAGE [WHAT TO DO...]: say why, then each line of what the user must do; exit 1
fail() {
    say "$1"
    shift
    for line in "$@"; do printf '    %s\n' "$line" >&2; done
    exit 1
}

is_root() { [ "$(id -u)" = 0 ]; }
is_debian() { [ -f /etc/debian_version ] && command -v apt-get >/dev/null 2>&1; }
