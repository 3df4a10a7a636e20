"""ffnet.superres: FFNet-SR and FFNet-SR-light, FFT loss, paired LR/HR folders, PSNR/SSIM on Y.

Names are imported lazily so that ``ffnet`` command-line start-up stays light.
"""
from ffnet.engine.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "models": ("FFNetSR", "ffnet_sr", "ffnet_sr_light", "build_model", "model_from_state_dict"),
    "losses": ("SRLoss", "fft_l1"),
    "checkpoint": ("convert_authors_state_dict", "load_generator"),
    "upscale": ("upscale_tiled",),
    "metrics": ("psnr_y", "ssim_y"),
    "data": ("bicubic_downscale", "make_lr_folder", "PairedImageFolder"),
    "engine": ("FFNetSRModel",),
})
