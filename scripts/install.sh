#!/usr/bin/env bash
# Installs ffnet with every extra and the test tools into a virtual environment (default .venv).
# Safe to run again: pip skips what is already installed, and the mmcv wheel is cached.
set -euo pipefail
VENV=${1:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
# torch/torchvision: the newest pair that timm works with on this platform (a CUDA build that
# also runs on CPU). setuptools 80.10.2 still has pkg_resources, which mmcv's setup.py needs.
$PIP install --disable-pip-version-check -q "torch==2.14.1" "torchvision==0.29.1" \
    "setuptools==80.10.2" wheel ninja
$PIP install --disable-pip-version-check -q "mmengine==0.10.7"
bash "$(dirname "$0")/build_mmcv.sh" "$VENV/bin/python"
$PIP install --disable-pip-version-check -q -e ".[all,test]"
