"""mmengine registrations for training: the diffusion model and the two datasets.

Configs (``generation/configs/*.py``) name ``LatentDiffusion`` as the model and
``DiffusionImageFolder`` or ``DiffusionLatentFolder`` as the dataset; they run on the project's
mmengine Runner (``ffnet.engine.runner``: atomic checkpoints, resume, a run lock on the work dir, DDP
through torchrun).
mmengine's ``EMAHook`` keeps the EMA weights, which checkpoints store as their ``state_dict``
(the raw weights go to ``ema_state_dict``).
"""
from __future__ import annotations

from pathlib import Path

import torch
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, MODELS

from ffnet.generation.autoencoder import FrozenAutoencoder
from ffnet.generation.data import ClassImageFolder, LatentFolder
from ffnet.generation.diffusion import HybridLoss, make_scheduler
from ffnet.generation.models import create_model

CONFIG_DIR = Path(__file__).parent / "configs"

DATASETS.register_module(name="DiffusionImageFolder", module=ClassImageFolder, force=True)
DATASETS.register_module(name="DiffusionLatentFolder", module=LatentFolder, force=True)


@MODELS.register_module(force=True)
class LatentDiffusion(BaseModel):
    """Class-conditional (latent) diffusion: a U-DiT/U-FFNet backbone trained with the hybrid loss.

    Args:
        backbone: ``create_model`` arguments, e.g. ``dict(arch='U-FFNet-B')``.
        vae_path: local diffusers ``AutoencoderKL`` folder; ``images`` are encoded with it. Without
            one, ``images`` are the diffusion space itself (pixel-space diffusion).
        sample_size: spatial size of the diffusion space (32 for 256 px images), used when sampling.
        num_train_timesteps: length of the DDPM schedule.
    """

    def __init__(self, backbone: dict, vae_path: str | None = None, sample_size: int = 32,
                 num_train_timesteps: int = 1000, data_preprocessor: dict | None = None, init_cfg: dict | None = None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = create_model(**backbone)
        self.sample_size = sample_size
        self.scheduler = make_scheduler(num_train_timesteps)
        self.loss_fn = HybridLoss(self.scheduler)
        self.autoencoder = FrozenAutoencoder(vae_path) if vae_path else None
        if self.autoencoder is not None and self.autoencoder.latent_channels != self.backbone.in_channels:
            raise ValueError(f"the autoencoder at {vae_path!r} makes {self.autoencoder.latent_channels}-channel "
                             "latents "
                             f"but the backbone takes {self.backbone.in_channels} channels")

    def diffusion_space(self, images: torch.Tensor | None, latents: torch.Tensor | None) -> torch.Tensor:
        """x_0 for the diffusion process: given latents, encoded images, or images themselves (no VAE)."""
        if latents is not None:
            return latents
        if images is None:
            raise ValueError("a batch needs 'images' or 'latents'")
        if self.autoencoder is not None:
            return self.autoencoder.encode(images)
        if images.shape[1] != self.backbone.in_channels:
            raise ValueError(f"got {images.shape[1]}-channel images but no autoencoder to encode them into "
                             f"{self.backbone.in_channels}-channel latents: set model.vae_path (--vae PATH)")
        return images

    def forward(self, labels: torch.Tensor, images: torch.Tensor | None = None, latents: torch.Tensor | None = None,
                mode: str = "loss") -> dict[str, torch.Tensor]:
        """``mode='loss'``: ``{'loss_mse', 'loss_vb'}`` batch means for random timesteps and noise."""
        if mode != "loss":
            raise ValueError(f"LatentDiffusion only computes training losses (mode='loss'), got mode={mode!r}; "
                             "sample with `ffnet generation sample`")
        x_start = self.diffusion_space(images, latents)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (x_start.shape[0],), device=x_start.device)
        noise = torch.randn_like(x_start)
        x_t = self.scheduler.add_noise(x_start, noise, t)
        terms = self.loss_fn(self.backbone(x_t, t, labels), x_start, x_t, t, noise)
        return {name: value.mean() for name, value in terms.items()}
