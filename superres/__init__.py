"""ffnet.superres: FFNet-SR and FFNet-SR-light, FFT loss, paired LR/HR folders, PSNR/SSIM on Y.

Names are imported lazily so that ``ffnet`` command-line start-up stays light.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "FFNetSR": "models", "ffnet_sr": "models", "ffnet_sr_light": "models", "build_model": "models",
    "model_from_state_dict": "models", "SRLoss": "losses", "fft_l1": "losses",
    "convert_authors_state_dict": "checkpoint", "load_generator": "checkpoint", "upscale_tiled": "upscale",
    "psnr_y": "metrics", "ssim_y": "metrics", "bicubic_downscale": "data", "make_lr_folder": "data",
    "PairedImageFolder": "data", "FFNetSRModel": "engine",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ffnet.superres' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ffnet.superres.{_EXPORTS[name]}"), name)
