"""ffnet.generation: U-DiT and U-FFNet latent-diffusion backbones, training, sampling and FID.

Submodules: ``models`` (UDiT, presets, ``create_model``), ``diffusion`` (schedule, hybrid loss,
sampler), ``training`` (mmengine model/runner), ``sample``, ``fid``, ``data``, ``complexity``.
Attributes below are imported lazily so that ``ffnet`` commands start fast.
"""
from ffnet.engine.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "models": ("UDiT", "create_model", "ARCHITECTURES", "convert_official_state_dict"),
    "diffusion": ("HybridLoss", "make_scheduler", "sample"),
    "training": ("LatentDiffusion",),
    "complexity": ("count_macs", "count_parameters"),
})
