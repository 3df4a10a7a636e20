#!/usr/bin/env bash
# Builds mmcv 2.1.0 with its compiled ops against the torch installed in the given venv.
#
# mmcv 2.1.0 (the version mmdet 3.3 / mmseg 1.2 accept) ships no wheel for modern torch, and
# its setup.py compiles with -std=c++17 while torch >= 2.10 headers require C++20. We build
# from the sdist with that one flag raised, and keep the wheel in a cache outside the checkout
# so later installs on the same machine take seconds instead of ~40 minutes.
set -euo pipefail
PY=$(cd "$(dirname "${1:?usage: build_mmcv.sh VENV_PYTHON}")" && pwd)/$(basename "$1")
VERSION=2.1.0
CACHE=${FFNET_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ffnet-wheels}
TORCH=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')
WHEEL_DIR="$CACHE/mmcv-$VERSION-torch$TORCH"
mkdir -p "$WHEEL_DIR"
if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  "$PY" -m pip download --no-deps --no-binary :all: -d "$WORK" "mmcv==$VERSION"
  tar -xzf "$WORK"/mmcv-$VERSION.tar.gz -C "$WORK"
  sed -i 's/-std=c++17/-std=c++20/g' "$WORK/mmcv-$VERSION/setup.py"
  echo "building mmcv $VERSION ops against torch $TORCH (slow: ~40 min on 2 cores)"
  (cd "$WORK/mmcv-$VERSION" && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
    "$PY" -m pip wheel --no-build-isolation --no-deps -w "$WHEEL_DIR" .)
fi
"$PY" -m pip install --no-deps "$WHEEL_DIR"/mmcv-*.whl
