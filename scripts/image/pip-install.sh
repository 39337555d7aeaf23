#!/bin/sh
# pip install "$@" into the image's venv: from the wheelhouse bind-mounted at /wheels when
# it holds wheels (offline), otherwise from the package index (online; the CA bundle given
# as the BuildKit secret "cacert" is used when present).
set -eu
PIP=/opt/gradekit/venv/bin/pip
# Wheels at the top of the wheelhouse, or one folder down (.wheelhouse/<variant>/ when the
# whole checkout is the build context).
LINKS=""
for d in /wheels /wheels/*; do
    if [ -d "$d" ] && ls "$d"/*.whl >/dev/null 2>&1; then LINKS="$LINKS --find-links $d"; fi
done
if [ -n "$LINKS" ]; then
    # shellcheck disable=SC2086
    exec "$PIP" install -q --no-index $LINKS "$@"
fi
if [ -s /run/secrets/cacert ]; then
    export PIP_CERT=/run/secrets/cacert
fi
if [ -n "${TORCH_INDEX_URL:-}" ]; then
    exec "$PIP" install -q --extra-index-url "$TORCH_INDEX_URL" "$@"
fi
exec "$PIP" install -q "$@"
