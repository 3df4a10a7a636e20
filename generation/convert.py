"""Official U-DiT weights (github YuchuanTian/U-DiT, HF ``yuchuantian/U-DiT``) → an ffnet checkpoint."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ffnet.generation.models import convert_official_state_dict, create_model

_CONFIGS = {"U-DiT-S": "udit_s", "U-DiT-B": "udit_b", "U-DiT-L": "udit_l"}


def convert_official_checkpoint(source: str | Path, dest: str | Path, arch: str,
                                vae_path: str | Path | None = None) -> Path:
    """Write ``dest``, loadable by ``ffnet gen sample/fid``, from an official U-DiT ``.pt``.

    The source is a state dict or a DiT-style dict; its ``'ema'`` weights are preferred.
    """
    from mmengine.config import Config

    from ffnet.generation.training import CONFIG_DIR

    if arch not in _CONFIGS:
        raise ValueError(f"official weights exist for {sorted(_CONFIGS)}, not {arch!r}")
    # DiT-style training checkpoints also pickle their argparse namespace
    state = torch.load(source, map_location="cpu", weights_only=False)
    for key in ("ema", "model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    weights = convert_official_state_dict(state)
    create_model(arch).load_state_dict(weights)
    cfg = Config.fromfile(CONFIG_DIR / f"{_CONFIGS[arch]}.py")
    if vae_path is not None:
        cfg.model.vae_path = str(vae_path)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.partial")
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in weights.items()}, "meta": {"cfg": cfg.pretty_text}}, tmp)
    os.replace(tmp, dest)
    return dest
