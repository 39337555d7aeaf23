#!/bin/sh
# pip install "$@" into the image's venv: from the wheelhouse bind-mounted at /wheels when
# it holds wheels (offline), otherwise from the package index (online; the CA bundle given
# as the BuildKit secret "cacert" is used when present).
set -eu
PIP=/opt/gradekit/venv/bin/pip
if ls /wheels/*.whl >/dev/null 2>&1; then
    exec "$PIP" install -q --no-index --find-links /wheels "$@"
fi
if [ -s /run/secrets/cacert ]; then
    export PIP_CERT=/run/secrets/cacert
fi
if [ -n "${TORCH_INDEX_URL:-}" ]; then
    exec "$PIP" install -q --extra-index-url "$TORCH_INDEX_URL" "$@"
fi
exec "$PIP" install -q "$@"
