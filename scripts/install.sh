#!/usr/bin/env bash
# Installs ffnet with every extra and the test tools into a virtual environment (default .venv).
# Safe to run again: pip skips what is already installed, and the mmcv wheel is cached.
#
# `scripts/install.sh --pointcept [VENV]` instead builds the separate environment (default
# .venv-pointcept) for upstream Pointcept (docs/pointcloud.md): the same torch pins, ffnet with the
# pointcloud and spconv extras and the test tools, and the PyPI packages that importing Pointcept's models,
# datasets and engines needs. Separate because Pointcept pulls in transformers (through peft), and
# transformers >= 4.28 with pycocotools breaks mmpretrain, which detection/segmentation need.
# Pointcept's CUDA-only extensions (pointops, torch_cluster, torch_scatter) are not installed: the
# Pointcept test job puts import stand-ins from tests/pointcept_stubs/ on its path instead.
set -euo pipefail
if [ "${1:-}" = "--pointcept" ]; then
  VENV=${2:-.venv-pointcept}
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  PIP="$VENV/bin/python -m pip"
  $PIP install --disable-pip-version-check -q "torch==2.14.1" "torchvision==0.29.1" "setuptools==80.10.2" wheel
  $PIP install --disable-pip-version-check -q -e ".[pointcloud,spconv,test]"
  # What `import pointcept.models, pointcept.datasets, pointcept.engines.{train,test}` needs from
  # PyPI (Pointcept's README lists them; none is on our FFNet path but Pointcept imports them all).
  # open3d-cpu needs the system library libusb-1.0 (Debian: libusb-1.0-0) at import.
  # Pinned to the versions the Pointcept job was checked with (transformers: Pointcept's README's).
  $PIP install --disable-pip-version-check -q "addict==2.4.0" "yapf==0.43.0" "termcolor==3.3.0" \
      "tensorboardX==2.6.5" "wandb==0.31.0" "h5py==3.16.0" "einops==0.8.2" "plyfile==1.1.5" \
      "PyYAML==6.0.4" "torch-geometric==2.8.1" "transformers==4.50.3" "peft==0.21.2" "open3d-cpu==0.20.0"
  if ! ldconfig -p 2>/dev/null | grep 'libusb-1\.0\.so\.0' >/dev/null; then
    echo "WARNING: libusb-1.0 is missing: open3d (imported by pointcept.datasets) will not import;" \
         "install it (Debian/Ubuntu: apt-get install libusb-1.0-0)" >&2
  fi
  exit 0
fi
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
