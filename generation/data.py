"""Training data: class-labelled image folders (ImageNet layout) and pre-extracted VAE latents.

* :class:`ClassImageFolder`: ``root/<class>/<image>``; classes are the sorted sub-folder names
  (ImageNet's synset order gives the usual 0-999 ids). Items: ``images`` (3, S, S) in [-1, 1]
  after ADM's center crop and a random horizontal flip, and ``labels``.
* :class:`LatentFolder`: what :func:`extract_latents` writes once per image folder:
  ``moments.npy`` (N, V, 2C, h, w) float16 posterior mean ‖ log-variance (V = 2 when the
  flipped image is stored too), ``labels.npy`` (N,) and ``meta.json``. Items: ``latents``, a
  fresh scaled posterior sample of a random view, and ``labels``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ffnet.engine.files import atomic_path, write_atomic
from ffnet.generation.autoencoder import FrozenAutoencoder, sample_moments


def center_crop_resize(image: Image.Image, size: int) -> Image.Image:
    """ADM's crop: box-halve while the short side is ≥ 2·size, bicubic to short side = size, center crop."""
    while min(image.size) >= 2 * size:
        image = image.resize((image.width // 2, image.height // 2), resample=Image.BOX)
    scale = size / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), resample=Image.BICUBIC)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    return image.crop((left, top, left + size, top + size))


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """``(3, size, size)`` uint8 tensor of an image file after :func:`center_crop_resize`."""
    with Image.open(path) as image:
        array = np.asarray(center_crop_resize(image.convert("RGB"), size))
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def to_signed(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(…, 3, H, W)`` → float in [-1, 1]."""
    return images.float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] → uint8 (values outside are clipped)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class ClassImageFolder(Dataset):
    """Class-labelled images from ``root/<class>/*``; items ``{'images': (3, S, S) in [-1, 1], 'labels': int}``."""

    def __init__(self, root: str | Path | None, image_size: int = 256, hflip: bool = True):
        from torchvision.datasets import ImageFolder

        if root is None:
            raise ValueError("no training data: give an image folder (--data DIR, ImageNet layout "
                             "root/<class>/<image>) "
                             "or pre-extracted latents (--latents DIR)")
        if not Path(root).is_dir():
            raise FileNotFoundError(f"image folder {str(root)!r} does not exist (expected root/<class>/<image>)")
        folder = ImageFolder(str(root))
        self.samples = folder.samples
        self.classes = folder.classes
        self.image_size = image_size
        self.hflip = hflip
        self.metainfo = {"classes": tuple(self.classes)}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        path, label = self.samples[index]
        image = to_signed(load_image(path, self.image_size))
        if self.hflip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return {"images": image, "labels": label}


class LatentFolder(Dataset):
    """Pre-extracted latents (see :func:`extract_latents`); items ``{'latents': (C, h, w), 'labels': int}``.

    ``image_size``, if given, must be the size the latents were extracted at; ``hflip=False``
    uses only the unflipped view even when the flipped one is stored.
    """

    def __init__(self, root: str | Path | None, image_size: int | None = None, hflip: bool = True):
        if root is None:
            raise ValueError("no training data: give pre-extracted latents (--latents DIR) or an image folder "
                             "(--data DIR)")
        self.root = Path(root)
        meta_path = self.root / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{str(self.root)!r} holds no extracted latents (meta.json is missing): "
                                    "run `ffnet generation extract-latents` first")
        self.meta = json.loads(meta_path.read_text())
        if image_size is not None and image_size != self.meta["image_size"]:
            raise ValueError(f"the latents in {str(self.root)!r} were extracted from {self.meta['image_size']} px "
                             "images, "
                             f"but the config asks for {image_size} px")
        self.hflip = hflip
        self.labels = np.load(self.root / "labels.npy")
        self.scaling_factor = float(self.meta["scaling_factor"])
        self.metainfo = {"classes": tuple(self.meta["classes"])}
        self._moments: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        if self._moments is None:
            self._moments = np.load(self.root / "moments.npy", mmap_mode="r")
        views = self._moments.shape[1] if self.hflip else 1
        view = int(torch.randint(views, ())) if views > 1 else 0
        moments = torch.from_numpy(np.array(self._moments[index, view], dtype=np.float32))
        return {"latents": sample_moments(moments[None], self.scaling_factor)[0], "labels": int(self.labels[index])}


@torch.no_grad()
def extract_latents(
    image_root: str | Path,
    vae_path: str | Path,
    out_dir: str | Path,
    image_size: int = 256,
    batch_size: int = 32,
    hflip: bool = True,
    num_workers: int = 4,
    device: str = "cpu",
) -> Path:
    """Encode every image of ``image_root`` once and write a :class:`LatentFolder` to ``out_dir``.

    Files are written atomically (:mod:`ffnet.engine.files`) and ``meta.json`` comes last (a previous
    one is removed first), so a folder with ``meta.json`` is always whole.
    """
    from numpy.lib.format import open_memmap
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    autoencoder = FrozenAutoencoder(vae_path)
    dataset = ClassImageFolder(image_root, image_size, hflip=False)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "meta.json").unlink(missing_ok=True)
    views = 2 if hflip else 1
    side = image_size // autoencoder.downsample_factor
    shape = (len(dataset), views, 2 * autoencoder.latent_channels, side, side)
    labels = np.empty(len(dataset), dtype=np.int64)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    with atomic_path(out_dir / "moments.npy") as tmp_moments, atomic_path(out_dir / "labels.npy") as tmp_labels:
        moments = open_memmap(tmp_moments, mode="w+", dtype=np.float16, shape=shape)
        start = 0
        for batch in tqdm(loader, desc="extracting latents", unit="batch"):
            images = batch["images"].to(device)
            stop = start + images.shape[0]
            moments[start:stop, 0] = autoencoder.moments(images).cpu().numpy()
            if hflip:
                moments[start:stop, 1] = autoencoder.moments(images.flip(-1)).cpu().numpy()
            labels[start:stop] = batch["labels"].numpy()
            start = stop
        moments.flush()
        del moments
        with open(tmp_labels, "wb") as f:  # a file object: np.save would append .npy to the temporary name
            np.save(f, labels)
    meta = {"classes": list(dataset.classes), "scaling_factor": autoencoder.scaling_factor, "image_size": image_size,
            "latent_channels": autoencoder.latent_channels, "views": views, "vae_path": autoencoder.path}
    write_atomic(out_dir / "meta.json", json.dumps(meta, indent=1))
    return out_dir
