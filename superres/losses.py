"""Training loss of FFNet-SR: pixel L1 plus a frequency-domain L1 (the release's ``FFTLoss``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def fft_l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the real and imaginary parts of ``rfft2`` over the last two dims.

    ``(B, C, H, W), (B, C, H, W) → ()``; unnormalized ("backward") FFT, as in the release.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    spectrum = lambda t: torch.view_as_real(torch.fft.rfft2(t.float()))  # noqa: E731
    return F.l1_loss(spectrum(prediction), spectrum(target))


class SRLoss(nn.Module):
    """``L1(pred, gt) + fft_weight · fft_l1(pred, gt)``; returns the two weighted terms by name.

    ``fft_weight``: 0.02 in the authors' option files, 0.05 in the paper's text.
    """

    def __init__(self, fft_weight: float = 0.02, l1_weight: float = 1.0):
        super().__init__()
        self.fft_weight = fft_weight
        self.l1_weight = l1_weight

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
        losses = {"loss_l1": self.l1_weight * F.l1_loss(prediction, target)}
        if self.fft_weight:
            losses["loss_fft"] = self.fft_weight * fft_l1(prediction, target)
        return losses
