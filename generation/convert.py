"""Official U-DiT weights (github YuchuanTian/U-DiT, HF ``yuchuantian/U-DiT``) → an ffnet checkpoint."""
from __future__ import annotations

from pathlib import Path

from ffnet.engine.checkpoints import describe_state_dict, load_state_dict, load_weights
from ffnet.engine.errors import CheckpointError, UserError
from ffnet.engine.files import save_atomic
from ffnet.generation.models import create_model, official_arch

CONFIGS = {"U-DiT-S": "udit_s", "U-DiT-B": "udit_b", "U-DiT-L": "udit_l"}


def convert_official_checkpoint(source: str | Path, dest: str | Path, arch: str | None = None,
                                vae_path: str | Path | None = None) -> Path:
    """Write ``dest``, loadable by ``ffnet generation sample/fid``, from an official U-DiT ``.pt``.

    The source is a state dict or a DiT-style dict (read weights-only; its ``'ema'`` weights are
    preferred, see :func:`ffnet.engine.checkpoints.unwrap_state_dict`). ``arch`` (``'U-DiT-B'``, ...)
    defaults to the size the weights have; the whole file must fit it (strict).
    """
    from mmengine.config import Config

    from ffnet.generation.training import CONFIG_DIR

    if arch is not None and arch not in CONFIGS:
        raise UserError(f"--arch {arch}: official weights exist for {', '.join(CONFIGS)}")
    weights = load_weights(source, prefer_ema=True)
    found = official_arch(weights)
    if found is None:
        raise CheckpointError(f"{source}: not an official U-DiT checkpoint (it looks like "
                              f"{describe_state_dict(weights)}); give a .pt of github.com/YuchuanTian/U-DiT")
    arch = arch or found
    model = create_model(arch)
    load_state_dict(model, weights, source=str(source), target=arch)
    cfg = Config.fromfile(CONFIG_DIR / f"{CONFIGS[arch]}.py")
    if vae_path is not None:
        cfg.model.vae_path = str(vae_path)
    state = {f"backbone.{k}": v for k, v in model.state_dict().items()}
    return save_atomic({"state_dict": state, "meta": {"cfg": cfg.pretty_text}}, dest)
