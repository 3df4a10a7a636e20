"""The frozen diffusers ``AutoencoderKL`` that maps 256x256 images to 4x32x32 latents and back.

Weights are loaded from a local folder only (``save_pretrained`` layout, e.g. a download of
``stabilityai/sd-vae-ft-ema``); nothing is fetched at run time.
"""
from __future__ import annotations

from pathlib import Path

import torch


def load_autoencoder(path: str | Path):
    """``diffusers.AutoencoderKL`` from a local folder, in eval mode without gradients."""
    from diffusers import AutoencoderKL

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"no AutoencoderKL at {str(path)!r}: pass --vae a local folder holding config.json and the weights "
            "(a diffusers save_pretrained folder, e.g. a download of stabilityai/sd-vae-ft-ema)")
    vae = AutoencoderKL.from_pretrained(path, local_files_only=True)
    return vae.eval().requires_grad_(False)


class FrozenAutoencoder:
    """Encode images to scaled latents and decode them back; not an ``nn.Module`` on purpose.

    Keeping the VAE outside the module tree leaves it out of the diffusion model's state dict,
    its EMA copy and its optimizer. It follows the device of the tensors it is given.
    Shapes: images ``(B, 3, H, W)`` in [-1, 1] ↔ latents ``(B, C_lat, H/f, W/f)``.
    """

    def __init__(self, path: str | Path):
        self.path = str(path)
        self.vae = load_autoencoder(path)
        self.scaling_factor = float(self.vae.config.scaling_factor)
        self.latent_channels = int(self.vae.config.latent_channels)
        self.downsample_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)

    def __deepcopy__(self, memo) -> "FrozenAutoencoder":
        return self

    def _follow(self, x: torch.Tensor) -> None:
        parameter = next(self.vae.parameters())
        if parameter.device != x.device:
            self.vae.to(x.device)

    @torch.no_grad()
    def moments(self, images: torch.Tensor) -> torch.Tensor:
        """Posterior mean and log-variance, unscaled: ``(B, 2·C_lat, H/f, W/f)``."""
        self._follow(images)
        return self.vae.encode(images.to(self.vae.dtype)).latent_dist.parameters.float()

    @torch.no_grad()
    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A posterior sample times the scaling factor (the diffusion model's input space)."""
        return sample_moments(self.moments(images), self.scaling_factor, generator)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] from scaled latents."""
        self._follow(latents)
        return self.vae.decode(latents.to(self.vae.dtype) / self.scaling_factor).sample.float()


def sample_moments(moments: torch.Tensor, scaling_factor: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Scaled sample of the diagonal Gaussian ``(mean ‖ logvar)``, ``(B, 2C, h, w) → (B, C, h, w)``."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    return DiagonalGaussianDistribution(moments).sample(generator) * scaling_factor
