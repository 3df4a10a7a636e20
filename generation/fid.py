"""FID and Inception Score of a checkpoint's samples with torchmetrics (torch-fidelity's Inception).

Protocol (the same for every model): class labels balanced over the classes (``i mod K``,
shuffled by the seed), DDPM sampling with the learned variance (250 steps, guidance 1.5 by
default), VAE decoding, uint8 images; FID on the 2048-d pool features against the reference
folder (every image center-cropped like the training data), IS on the generated images (10 splits).
The Inception weights (``pt_inception-2015-12-05``) are read from a local file.
Under torchrun, ranks share the samples and torchmetrics gathers the statistics.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ffnet.generation.data import load_image

INCEPTION_HINT = ("the Inception weights of torch-fidelity (pt_inception-2015-12-05, e.g. the file "
                  "weights-inception-2015-12-05-6726825d.pth from the torch-fidelity GitHub releases)")


def load_inception(weights_path: str | Path | None, feature: str) -> nn.Module:
    """torchmetrics' Inception-v3 returning ``feature`` (``'2048'`` or ``'logits_unbiased'``) from local weights."""
    from torchmetrics.image.fid import NoTrainInceptionV3

    if weights_path is None or not Path(weights_path).is_file():
        raise FileNotFoundError(f"Inception weights not found at {str(weights_path)!r}: pass --inception PATH, "
                                f"{INCEPTION_HINT}")
    return NoTrainInceptionV3(name="inception-v3-compat", features_list=[feature],
                              feature_extractor_weights_path=str(weights_path))


class ReferenceImages(Dataset):
    """Every image under ``root`` (recursively) as a uint8 ``(3, S, S)`` tensor, center-cropped to ``size``."""

    def __init__(self, root: str | Path, size: int, rank: int = 0, world_size: int = 1):
        from torchvision.datasets.folder import IMG_EXTENSIONS

        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"reference image folder {str(root)!r} does not exist")
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMG_EXTENSIONS)
        if not files:
            raise FileNotFoundError(f"no images under {str(root)!r} (extensions {IMG_EXTENSIONS})")
        self.files = files[rank::world_size]
        self.total = len(files)
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        return load_image(self.files[index], self.size)


def as_rgb(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` with C in {1, 3} → ``(N, 3, H, W)``."""
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


@torch.no_grad()
def compute_metrics(fake_batches: Iterable[torch.Tensor], real_batches: Iterable[torch.Tensor],
                    fid_feature: nn.Module, is_feature: nn.Module, device: str | torch.device = "cpu",
                    is_splits: int = 10) -> dict[str, float]:
    """FID(fake, real) and IS(fake) from uint8 image batches, with the given feature extractors.

    ``fid_feature`` maps uint8 ``(N, 3, H, W)`` to features ``(N, d)``, ``is_feature`` to logits
    ``(N, K)`` (torchmetrics' ``feature=`` modules).
    """
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.inception import InceptionScore

    fid = FrechetInceptionDistance(feature=fid_feature).to(device)
    with warnings.catch_warnings():  # it keeps the logits: ~4 kB per image, 200 MB for FID-50K
        warnings.filterwarnings("ignore", message="Metric `InceptionScore` will save all extracted features")
        inception_score = InceptionScore(feature=is_feature, splits=is_splits).to(device)
    num_fake = num_real = 0
    for images in fake_batches:
        images = as_rgb(images).to(device)
        fid.update(images, real=False)
        inception_score.update(images)
        num_fake += images.shape[0]
    for images in real_batches:
        fid.update(as_rgb(images).to(device), real=True)
        num_real += images.shape[0]
    is_mean, is_std = inception_score.compute()
    return {"fid": float(fid.compute()), "inception_score": float(is_mean), "inception_score_std": float(is_std),
            "num_generated": num_fake, "num_reference": num_real}


def balanced_labels(num: int, num_classes: int, seed: int) -> torch.Tensor:
    """``num`` labels ``i mod num_classes``, shuffled with ``seed``."""
    order = torch.randperm(num, generator=torch.Generator().manual_seed(seed))
    return (torch.arange(num) % num_classes)[order]


def _distributed() -> tuple[int, int]:
    """(rank, world size), initialising the process group when launched by torchrun."""
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return (dist.get_rank(), world_size) if world_size > 1 else (0, 1)


def evaluate_checkpoint(checkpoint: str | Path, reference: str | Path, num: int, inception: str | Path | None,
                        vae_path: str | Path | None = None, num_steps: int = 250, cfg_scale: float = 1.5,
                        batch_size: int = 32, seed: int = 0, device: str = "cpu", is_splits: int = 10,
                        features: tuple[nn.Module, nn.Module] | None = None, num_workers: int = 8) -> dict[str, float]:
    """Sample ``num`` images from ``checkpoint`` and score them against the ``reference`` folder.

    ``features`` replaces the Inception networks by other (FID feature, IS logit) extractors
    (torchmetrics' ``feature=`` modules); ``inception`` is then unused. ``num_workers`` load the
    reference images.
    """
    from tqdm.auto import tqdm

    from ffnet.generation.sample import generate, load_generator

    rank, world_size = _distributed()
    if device == "cuda" and world_size > 1:
        device = f"cuda:{torch.cuda.current_device()}"
    generator = load_generator(checkpoint, vae_path, device)
    if features is None:
        features = load_inception(inception, "2048"), load_inception(inception, "logits_unbiased")
    fid_feature, is_feature = features
    labels = balanced_labels(num, generator.num_classes, seed)[rank::world_size]
    image_size = generator.sample_size * (generator.autoencoder.downsample_factor if generator.autoencoder else 1)
    reference_set = ReferenceImages(reference, image_size, rank, world_size)

    def fake_batches():
        for index, chunk in enumerate(tqdm(labels.split(batch_size), desc="generating", disable=rank != 0)):
            yield generate(generator, chunk, num_steps, cfg_scale, seed=seed * 100_003 + index * world_size + rank,
                           batch_size=batch_size)

    real_batches = DataLoader(reference_set, batch_size=batch_size, num_workers=num_workers)
    metrics = compute_metrics(fake_batches(), tqdm(real_batches, desc="reference", disable=rank != 0),
                              fid_feature, is_feature, device, is_splits)
    metrics.update(num_generated=num, num_reference=reference_set.total, checkpoint=str(checkpoint),
                   steps=num_steps, cfg_scale=cfg_scale, seed=seed)
    return metrics
