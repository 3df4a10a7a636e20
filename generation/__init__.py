"""ffnet.generation: U-DiT and U-FFNet latent-diffusion backbones, training, sampling and FID.

Submodules: ``models`` (UDiT, presets, ``create_model``), ``diffusion`` (schedule, hybrid loss,
sampler), ``training`` (mmengine model/runner), ``sample``, ``fid``, ``data``, ``complexity``.
Attributes below are imported lazily so that ``ffnet`` commands start fast.
"""
from importlib import import_module

_EXPORTS = {
    "UDiT": "models", "create_model": "models", "ARCHITECTURES": "models", "convert_official_state_dict": "models",
    "HybridLoss": "diffusion", "make_scheduler": "diffusion", "sample": "diffusion",
    "LatentDiffusion": "training", "count_macs": "complexity", "count_parameters": "complexity",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"ffnet.generation.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'ffnet.generation' has no attribute {name!r}")
