"""PSNR and SSIM on the Y channel, the SR field's convention (BasicSR ``test_y_channel=True``).

* Images are 8-bit RGB: network outputs are clamped to [0, 1], scaled by 255 and rounded.
* Y is ITU-R BT.601 "MATLAB" luma in [16, 235]: ``Y = 16 + 65.481 R + 128.553 G + 24.966 B``
  with R, G, B in [0, 1] (``skimage.color.rgb2ycbcr``), kept in float64 (not rounded).
* ``crop_border`` pixels (the scale) are removed on every side before scoring.
* PSNR with peak 255; SSIM with an 11x11 Gaussian window, σ = 1.5, population covariances and
  K1 = 0.01, K2 = 0.03 (``skimage.metrics.structural_similarity``), averaged over the valid region.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS
from skimage.color import rgb2ycbcr
from skimage.metrics import mean_squared_error, structural_similarity


def tensor_to_uint8(image: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` float in [0, 1] → ``(H, W, 3)`` uint8 (clamp, ×255, round)."""
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an RGB tensor of shape (3, H, W), got {tuple(image.shape)}")
    array = image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
    return array.permute(1, 2, 0).cpu().numpy()


def y_channel(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB → ``(H, W)`` float64 BT.601 luma in [16, 235]."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an 8-bit RGB array (H, W, 3), got {image.dtype} {image.shape}")
    return rgb2ycbcr(image)[..., 0]


def _crop(image: np.ndarray, border: int) -> np.ndarray:
    if border < 0:
        raise ValueError(f"crop_border must be >= 0, got {border}")
    if border == 0:
        return image
    if min(image.shape[:2]) <= 2 * border:
        raise ValueError(f"image of size {image.shape[:2]} is too small to crop {border} px on each side")
    return image[border:-border, border:-border]


def _check_pair(prediction: np.ndarray, target: np.ndarray) -> None:
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {prediction.shape} and target {target.shape} differ in size")


def psnr_y(prediction: np.ndarray, target: np.ndarray, crop_border: int) -> float:
    """PSNR (dB) on Y between two uint8 RGB images ``(H, W, 3)``; ``inf`` for identical images."""
    _check_pair(prediction, target)
    mse = mean_squared_error(_crop(y_channel(target), crop_border), _crop(y_channel(prediction), crop_border))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim_y(prediction: np.ndarray, target: np.ndarray, crop_border: int) -> float:
    """SSIM on Y between two uint8 RGB images ``(H, W, 3)`` (Gaussian 11x11, σ 1.5, peak 255)."""
    _check_pair(prediction, target)
    return float(structural_similarity(
        _crop(y_channel(target), crop_border), _crop(y_channel(prediction), crop_border),
        data_range=255.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    ))


@METRICS.register_module()
class SRPSNRSSIM(BaseMetric):
    """Mean PSNR/SSIM on Y per test set (``'Set5/PSNR'``, ...), plus the overall image mean.

    Reads the ``pred`` and ``gt`` tensors ``(3, H, W)``, ``dataset`` name and ``scale`` of each
    prediction of :class:`~ffnet.superres.engine.FFNetSRModel`. ``crop_border`` defaults to the scale.
    """

    default_prefix = None

    def __init__(self, crop_border: int | None = None, collect_device: str = "cpu", prefix: str | None = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.crop_border = crop_border

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            border = sample["scale"] if self.crop_border is None else self.crop_border
            pred, gt = tensor_to_uint8(sample["pred"]), tensor_to_uint8(sample["gt"])
            self.results.append(dict(dataset=sample["dataset"], psnr=psnr_y(pred, gt, border),
                                     ssim=ssim_y(pred, gt, border)))

    def compute_metrics(self, results: list) -> dict:
        per_set = defaultdict(list)
        for result in results:
            per_set[result["dataset"]].append(result)
        metrics = {}
        for name, items in per_set.items():
            metrics[f"{name}/PSNR"] = float(np.mean([r["psnr"] for r in items]))
            metrics[f"{name}/SSIM"] = float(np.mean([r["ssim"] for r in items]))
        metrics["PSNR"] = float(np.mean([r["psnr"] for r in results]))
        metrics["SSIM"] = float(np.mean([r["ssim"] for r in results]))
        return metrics
