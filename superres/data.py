"""Paired LR/HR image folders (DIV2K / Flickr2K / benchmark layouts) and bicubic LR generation.

Layouts the SR field ships, relative to one data root::

    DIV2K/DIV2K_train_HR/0001.png          DIV2K/DIV2K_train_LR_bicubic/X2/0001x2.png
    Flickr2K/Flickr2K_HR/000001.png        Flickr2K/Flickr2K_LR_bicubic/X2/000001x2.png
    benchmark/Set5/HR/baby.png             benchmark/Set5/LR_bicubic/X2/babyx2.png

A folder pair is ``dict(name=..., hr=..., lr=...)`` where ``lr`` may contain ``{scale}``; LR file
names follow ``filename_tmpl`` (default ``'{stem}x{scale}'``, the DIV2K/benchmark convention).
LR images are MATLAB ``imresize(hr, 1/scale, 'bicubic')`` of the HR image cropped to a multiple of
the scale; :func:`make_lr_folder` makes them for users who only have HR images.
"""
from __future__ import annotations

import math
import os
import random
import struct
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from mmengine.dataset import BaseDataset
from mmengine.registry import DATASETS
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")

DIV2K_TRAIN = dict(name="DIV2K", hr="DIV2K/DIV2K_train_HR", lr="DIV2K/DIV2K_train_LR_bicubic/X{scale}")
DIV2K_VALID = dict(name="DIV2K_valid", hr="DIV2K/DIV2K_valid_HR", lr="DIV2K/DIV2K_valid_LR_bicubic/X{scale}")
FLICKR2K_TRAIN = dict(name="Flickr2K", hr="Flickr2K/Flickr2K_HR", lr="Flickr2K/Flickr2K_LR_bicubic/X{scale}")
BENCHMARK_SETS = ("Set5", "Set14", "B100", "Urban100", "Manga109")


def benchmark_folder(name: str) -> dict:
    """``benchmark/<name>/HR`` with ``benchmark/<name>/LR_bicubic/X{scale}`` (EDSR's benchmark layout)."""
    return dict(name=name, hr=f"benchmark/{name}/HR", lr=f"benchmark/{name}/LR_bicubic/X{{scale}}")


def read_rgb(path: str | os.PathLike, allow_gray: bool = False, any_size: bool = False, copy: bool = True
             ) -> np.ndarray:
    """An 8-bit RGB image ``(H, W, 3)`` uint8.

    Grayscale images are replicated to three channels only with ``allow_gray`` (what OpenCV's
    colour loading does for the benchmark sets); other modes (RGBA, 16-bit, CMYK, ...) are refused
    with the fix (convert the file to 8-bit RGB), as are missing, unreadable and truncated files.
    ``any_size`` lifts PIL's decompression-bomb limit (for images the user asked to upscale);
    ``copy=False`` returns a read-only array without the extra copy.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file" + ("; give a file, not a folder" if path.is_dir()
                                                                  else "; check the path"))
    limit = Image.MAX_IMAGE_PIXELS
    if any_size:
        Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as image:
            image.load()
            return _rgb_array(image, path, allow_gray, copy)
    except UnidentifiedImageError:
        raise ValueError(f"{path}: not an image file PIL can read; give a PNG, JPEG, BMP, TIFF or WebP "
                         "image") from None
    except Image.DecompressionBombError as err:
        raise ValueError(f"{path}: {err}") from None
    except (OSError, SyntaxError, struct.error) as err:  # PIL's errors for truncated or corrupt files
        raise ValueError(f"{path}: the image is truncated or corrupt ({' '.join(str(err).split())}); "
                         "export or download it again") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _rgb_array(image: Image.Image, path: Path, allow_gray: bool, copy: bool) -> np.ndarray:
    to_array = np.array if copy else np.asarray
    mode = image.mode
    if mode == "RGB":
        return to_array(image)
    if mode == "P":
        if "transparency" in image.info:
            raise ValueError(f"{path}: palette image with transparency; FFNet-SR needs 8-bit RGB - flatten it "
                             "first (e.g. Image.open(p).convert('RGB').save(p))")
        return to_array(image.convert("RGB"))
    if mode == "L" and allow_gray:
        return to_array(image.convert("RGB"))
    if mode in ("L", "1", "I", "I;16", "I;16B", "I;16L", "F", "LA"):
        raise ValueError(f"{path}: grayscale image (mode {mode}); FFNet-SR needs 8-bit RGB images - convert it "
                         "first, e.g. Image.open(p).convert('RGB').save(p) (the model upscales colour images)")
    if mode in ("RGBA", "RGBa"):
        raise ValueError(f"{path}: RGBA image; FFNet-SR needs 8-bit RGB - drop or composite the alpha channel "
                         "first, e.g. Image.open(p).convert('RGB').save(p)")
    raise ValueError(f"{path}: image mode {mode}, not 8-bit RGB; FFNet-SR needs 8-bit RGB images - convert it "
                     "first, e.g. Image.open(p).convert('RGB').save(p)")


def check_output_image_path(path: str | os.PathLike) -> str:
    """The PIL format an output image ``path`` will be written in; raises for a missing folder or unknown suffix."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: the output folder {path.parent} does not exist; create it first "
                                f"(mkdir -p {path.parent})")
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; give an output file name such as {path / 'out.png'}")
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None or image_format not in Image.SAVE:
        raise ValueError(f"{path}: unknown image format {path.suffix!r}; give an output name ending in .png "
                         "(lossless), .bmp, .tif or .jpg")
    return image_format


def write_rgb(image: np.ndarray, path: str | os.PathLike) -> None:
    """Write an ``(H, W, 3)`` uint8 image atomically; the format follows the suffix. Creates missing folders."""
    from ffnet.engine.files import atomic_path

    path = Path(path)
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None:
        raise ValueError(f"{path}: unknown image format {path.suffix!r}; use .png, .bmp, .tif or .jpg")
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format=image_format)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 → ``(3, H, W)`` float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)


def mod_crop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so that height and width are multiples of ``scale``."""
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]


def bicubic_resize(image: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB ``imresize(image, scale, 'bicubic')`` (antialiased when shrinking) of a uint8 ``(H, W, 3)``.

    Like MATLAB on uint8 images, rows are resized first and rounded (half away from zero) to uint8
    before the columns are resized. The 1-D resampling is ``bicubic_pytorch`` (MATLAB's kernel,
    weights and symmetric padding).
    """
    from bicubic_pytorch import imresize

    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"expected a uint8 image (H, W, C), got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    out_h, out_w = math.ceil(height * scale), math.ceil(width * scale)
    to_uint8 = lambda x: torch.floor(x + 0.5).clamp_(0, 255)  # noqa: E731  (MATLAB's rounding)
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0).float()
    rows = to_uint8(imresize(tensor, sizes=(out_h, width)))
    resized = to_uint8(imresize(rows, sizes=(out_h, out_w)))
    return resized[0].permute(1, 2, 0).to(torch.uint8).numpy()


def bicubic_downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """The benchmark LR image of an HR image: mod-crop to the scale, then MATLAB bicubic ``1/scale``."""
    return bicubic_resize(mod_crop(hr, scale), 1 / scale)


def list_images(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def make_lr_folder(hr_dir: str | os.PathLike, out_dir: str | os.PathLike, scales: Sequence[int] = (2, 3, 4),
                   filename_tmpl: str = "{stem}x{scale}", allow_gray: bool = True) -> list[Path]:
    """Write ``out_dir/X{s}/<filename_tmpl>.png`` bicubic LR images for every HR image and scale."""
    from tqdm import tqdm

    written = []
    for path in tqdm(list_images(hr_dir), desc="bicubic LR"):
        hr = read_rgb(path, allow_gray=allow_gray)
        for scale in scales:
            target = Path(out_dir) / f"X{scale}" / (filename_tmpl.format(stem=path.stem, scale=scale) + ".png")
            write_rgb(bicubic_downscale(hr, scale), target)
            written.append(target)
    return written


def _image_size(path: Path) -> tuple[int, int]:
    """``(H, W)`` from the file header."""
    with Image.open(path) as image:
        return image.height, image.width


@DATASETS.register_module()
class PairedImageFolder(BaseDataset):
    """LR/HR pairs from one or more folder pairs under ``data_root``.

    Each item is ``{'inputs': LR (3, h, w), 'data_samples': {'gt': HR (3, s h, s w), 'name', 'dataset',
    'scale'}}`` with float32 values in [0, 1]. With ``patch_size`` (LR pixels) the pair is randomly
    cropped to ``patch_size`` / ``scale · patch_size`` and, with ``augment``, flipped horizontally,
    vertically and transposed (each with probability 1/2: all 8 flips/90° rotations). Without
    ``patch_size`` the HR image is cropped to ``scale ×`` the LR size (top-left), as in BasicSR.

    Args:
        data_root: folder the ``folders`` paths are relative to.
        folders: ``dict(name, hr, lr)`` pairs; ``lr`` may contain ``{scale}``.
        scale: upscaling factor.
        patch_size: LR crop size for training, or ``None`` for whole images.
        augment: random flips and 90-degree rotations.
        filename_tmpl: LR file stem from the HR stem, with ``{stem}`` and ``{scale}``.
        allow_gray: replicate grayscale images to RGB (benchmark convention) instead of failing.
        cache_images: keep decoded images in memory (per data-loader worker); for small sets.
    """

    def __init__(self, data_root: str, folders: Sequence[dict] | dict, scale: int, patch_size: int | None = None,
                 augment: bool = False, filename_tmpl: str = "{stem}x{scale}", allow_gray: bool = True,
                 cache_images: bool = False, **kwargs):
        self.folders = [folders] if isinstance(folders, dict) else list(folders)
        self.scale = int(scale)
        self.patch_size = patch_size
        self.augment = augment
        self.filename_tmpl = filename_tmpl
        self.allow_gray = allow_gray
        self._cache: dict[str, np.ndarray] | None = {} if cache_images else None
        kwargs.setdefault("test_mode", patch_size is None)
        super().__init__(data_root=str(data_root), data_prefix=dict(), **kwargs)

    def load_data_list(self) -> list[dict]:
        root = Path(self.data_root)
        data_list = []
        for folder in self.folders:
            hr_dir = root / folder["hr"]
            lr_dir = root / folder["lr"].format(scale=self.scale)
            if not lr_dir.is_dir():
                raise FileNotFoundError(
                    f"LR folder {lr_dir} for x{self.scale} does not exist; create bicubic LR images with "
                    f"`ffnet superres make-lr --scales {self.scale} {hr_dir} {lr_dir.parent}`")
            lr_files = {p.stem: p for p in list_images(lr_dir)}
            hr_files = list_images(hr_dir)
            if not hr_files:
                raise FileNotFoundError(f"no images in HR folder {hr_dir}")
            for hr_path in hr_files:
                lr_stem = self.filename_tmpl.format(stem=hr_path.stem, scale=self.scale)
                if lr_stem not in lr_files:
                    raise FileNotFoundError(f"no LR image {lr_dir / lr_stem}.* for HR image {hr_path}; "
                                            f"check filename_tmpl={self.filename_tmpl!r}")
                lr_path = lr_files[lr_stem]
                self._check_sizes(hr_path, lr_path)
                data_list.append(dict(hr_path=str(hr_path), lr_path=str(lr_path), name=hr_path.stem,
                                      dataset=folder.get("name", hr_dir.name)))
        return data_list

    def _check_sizes(self, hr_path: Path, lr_path: Path) -> None:
        (hr_h, hr_w), (lr_h, lr_w) = _image_size(hr_path), _image_size(lr_path)
        s = self.scale
        if not (lr_h * s <= hr_h < (lr_h + 1) * s and lr_w * s <= hr_w < (lr_w + 1) * s):
            raise ValueError(
                f"LR/HR size mismatch: {lr_path} is {lr_h}x{lr_w}, so at x{s} the HR image should be "
                f"{lr_h * s}x{lr_w * s} (up to {s - 1} px more before mod-crop), but {hr_path} is {hr_h}x{hr_w}; "
                f"check the scale or regenerate the LR images with `ffnet superres make-lr`")
        if self.patch_size is not None and min(lr_h, lr_w) < self.patch_size:
            raise ValueError(f"{lr_path} ({lr_h}x{lr_w}) is smaller than the LR patch size {self.patch_size}")

    def _read(self, path: str) -> np.ndarray:
        if self._cache is None:
            return read_rgb(path, self.allow_gray)
        if path not in self._cache:
            self._cache[path] = read_rgb(path, self.allow_gray)
        return self._cache[path]

    def prepare_data(self, idx: int) -> dict:
        info = self.get_data_info(idx)
        lr, hr = self._read(info["lr_path"]), self._read(info["hr_path"])
        s = self.scale
        if self.patch_size is None:
            hr = hr[: lr.shape[0] * s, : lr.shape[1] * s]
        else:
            p = self.patch_size
            top, left = random.randint(0, lr.shape[0] - p), random.randint(0, lr.shape[1] - p)
            lr = lr[top: top + p, left: left + p]
            hr = hr[top * s: (top + p) * s, left * s: (left + p) * s]
        if self.augment:
            lr, hr = _random_flip_rotate(lr, hr)
        sample = dict(gt=to_tensor(hr), name=info["name"], dataset=info["dataset"], scale=s)
        return dict(inputs=to_tensor(lr), data_samples=sample)


def _random_flip_rotate(*images: np.ndarray) -> list[np.ndarray]:
    """The same random horizontal flip, vertical flip and transpose (each p = 1/2) on all images."""
    hflip, vflip, transpose = (random.random() < 0.5 for _ in range(3))
    out = []
    for image in images:
        if hflip:
            image = image[:, ::-1]
        if vflip:
            image = image[::-1]
        if transpose:
            image = image.transpose(1, 0, 2)
        out.append(image)
    return out
