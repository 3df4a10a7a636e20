"""Sampling from a training checkpoint: class-conditional images and image grids.

A checkpoint of ``ffnet generation train`` (mmengine) carries its config in ``meta['cfg']`` and the
EMA weights in ``state_dict``, so it rebuilds the network by itself; the VAE folder comes from the
config or from ``--vae``. Checkpoints are read weights-only (``ffnet.engine.checkpoints``) and the
stored config is read as data, never run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ffnet.engine.checkpoints import (config_from_text, describe_state_dict, load_file, load_state_dict,
                                      unwrap_state_dict)
from ffnet.engine.errors import CheckpointError
from ffnet.engine.files import atomic_path

from ffnet.generation.autoencoder import FrozenAutoencoder
from ffnet.generation.data import to_uint8
from ffnet.generation.diffusion import make_scheduler, sample
from ffnet.generation.models import UDiT, create_model, official_arch


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


def stored_config(checkpoint: Mapping[str, Any], source: str):
    """The mmengine ``Config`` a checkpoint carries as text in ``meta['cfg']``, read as data.

    mmengine writes it as ``name = <literal>`` lines (``Config.pretty_text``); executing it, as
    ``Config.fromstring`` does, would run whatever code the file holds, so only literals and
    ``dict(...)`` are accepted (anything else only with the trust opt-in; see
    :func:`ffnet.engine.checkpoints.config_from_text`).
    """
    meta = checkpoint.get("meta") if isinstance(checkpoint, Mapping) else None
    text = meta.get("cfg") if isinstance(meta, Mapping) else None
    if not isinstance(text, str):
        weights = unwrap_state_dict(checkpoint, prefer_ema=True, source=source)
        if official_arch(weights):
            raise CheckpointError(f"{source}: is an official {official_arch(weights)} checkpoint, which carries no "
                                  f"config; convert it first: ffnet generation convert --checkpoint {source} "
                                  "--out CONVERTED.pth")
        raise CheckpointError(f"{source}: carries no config (meta['cfg']), so the model cannot be rebuilt from it "
                              f"(the file looks like {describe_state_dict(weights)}); give a checkpoint of "
                              "`ffnet generation train` or of `ffnet generation convert`")
    return config_from_text(text, source)


def load_generator(checkpoint: str | Path, vae_path: str | Path | None = None,
                   device: str | torch.device = "cpu") -> Generator:
    """Rebuild the backbone of an ``ffnet generation train`` / ``convert`` checkpoint with its (EMA) weights."""
    source = str(checkpoint)
    state = load_file(checkpoint)
    cfg = stored_config(state, source)
    model_cfg = cfg.get("model")
    backbone_cfg = model_cfg.get("backbone") if isinstance(model_cfg, Mapping) else None
    if not isinstance(backbone_cfg, Mapping):
        raise CheckpointError(f"{source}: its stored config has no model.backbone; give a checkpoint of "
                              "`ffnet generation train` or of `ffnet generation convert`")
    try:
        backbone = create_model(**backbone_cfg)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: its stored model.backbone does not build a U-DiT ({err})") from None
    weights = unwrap_state_dict(state, source=source)
    prefix = "backbone."
    weights = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)} or weights
    load_state_dict(backbone, weights, source=source,
                    target=f"the {backbone_cfg.get('arch', 'U-DiT')} backbone of its stored config")
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

    grid = make_grid(images, nrow=nrow, padding=2, pad_value=255)
    with atomic_path(path) as tmp:
        Image.fromarray(grid.permute(1, 2, 0).squeeze(-1).numpy()).save(tmp, format="PNG")
    return Path(path)
