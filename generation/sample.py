"""Sampling from a training checkpoint: class-conditional images and image grids.

A checkpoint of ``ffnet gen train`` (mmengine) carries its config in ``meta['cfg']`` and the EMA
weights in ``state_dict``, so it rebuilds the network by itself; the VAE folder comes from the
config or from ``--vae``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from ffnet.generation.autoencoder import FrozenAutoencoder
from ffnet.generation.data import to_uint8
from ffnet.generation.diffusion import make_scheduler, sample
from ffnet.generation.models import UDiT, create_model


@dataclass
class Generator:
    """A trained backbone (eval mode, EMA weights), its autoencoder (``None``: pixel space) and sizes."""

    backbone: UDiT
    autoencoder: FrozenAutoencoder | None
    sample_size: int
    num_train_timesteps: int = 1000
    classes: Sequence[str] = field(default_factory=tuple)

    @property
    def num_classes(self) -> int:
        return self.backbone.num_classes

    def check_classes(self, labels: Sequence[int]) -> None:
        bad = [int(c) for c in labels if not 0 <= int(c) < self.num_classes]
        if bad:
            raise ValueError(f"class id(s) {bad} out of range: this model has {self.num_classes} classes "
                             f"(ids 0-{self.num_classes - 1})")


def load_generator(checkpoint: str | Path, vae_path: str | Path | None = None,
                   device: str | torch.device = "cpu") -> Generator:
    """Rebuild the backbone of an ``ffnet gen train`` checkpoint with its (EMA) weights."""
    from mmengine.config import Config

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {str(checkpoint)!r} does not exist")
    # mmengine checkpoints pickle their message hub and config, so they need the full unpickler
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if "cfg" not in state.get("meta", {}):
        raise ValueError(f"{str(checkpoint)!r} carries no config (meta['cfg']): use a checkpoint of `ffnet gen train` "
                         "or one made by `ffnet gen convert-udit`")
    cfg = Config.fromstring(state["meta"]["cfg"], ".py")
    backbone = create_model(**cfg.model.backbone)
    weights = {k[len("backbone."):]: v for k, v in state["state_dict"].items() if k.startswith("backbone.")}
    backbone.load_state_dict(weights)
    vae_path = vae_path or cfg.model.get("vae_path")
    autoencoder = FrozenAutoencoder(vae_path) if vae_path else None
    classes = tuple(state["meta"].get("dataset_meta", {}).get("classes", ()))
    return Generator(backbone.to(device).eval(), autoencoder, int(cfg.model.get("sample_size", 32)),
                     int(cfg.model.get("num_train_timesteps", 1000)), classes)


@torch.no_grad()
def generate(generator: Generator, labels: Sequence[int] | torch.Tensor, num_steps: int = 250,
             cfg_scale: float = 1.5, seed: int = 0, batch_size: int = 32, progress: bool = False) -> torch.Tensor:
    """uint8 images ``(N, 3, H, W)`` (or ``(N, C, H, W)`` for a pixel-space model) for ``labels`` (N,)."""
    labels = torch.as_tensor(labels, dtype=torch.long).flatten()
    generator.check_classes(labels.tolist())
    device = next(generator.backbone.parameters()).device
    rng = torch.Generator(device="cpu").manual_seed(seed)
    scheduler = make_scheduler(generator.num_train_timesteps)
    shape = (generator.backbone.in_channels, generator.sample_size, generator.sample_size)
    images = []
    for chunk in labels.split(batch_size):
        samples = sample(generator.backbone, chunk.to(device), shape, scheduler, num_steps, cfg_scale, rng, progress)
        if generator.autoencoder is not None:
            samples = generator.autoencoder.decode(samples)
        images.append(to_uint8(samples).cpu())
    return torch.cat(images)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int) -> Path:
    """Write uint8 ``(N, C, H, W)`` images as one PNG grid with ``nrow`` images per row (atomically)."""
    from PIL import Image
    from torchvision.utils import make_grid

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = make_grid(images, nrow=nrow, padding=2, pad_value=255)
    tmp = path.with_name(f".{path.name}.partial")
    Image.fromarray(grid.permute(1, 2, 0).squeeze(-1).numpy()).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
