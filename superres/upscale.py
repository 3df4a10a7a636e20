"""Whole-image upscaling by overlapping tiles: memory is set by the tile size, not by the image.

Each ``tile × tile`` LR region is processed together with ``overlap`` LR pixels of context on
every side (fewer at the image border) and only its own region of the output is kept. With an
overlap of at least the network's receptive radius (the default), every kept output pixel sees
exactly what it sees in one untiled pass, so tiled and untiled outputs are equal; a smaller
overlap is faster and differs slightly near tile seams.

:func:`upscale_file` never holds a float32 copy of the whole input or output: the input stays
8-bit (3 bytes per LR pixel), each tile is converted to float on the model's device, and its
rounded 8-bit result goes straight into the output array. An output above ``in_memory_limit``
bytes (default 256 MiB) lives in a memory-mapped temporary file in the target's folder whose pages
are released after each band of tiles, and PNG targets are encoded band by band
(:func:`write_png_bands`), so the resident memory stays bounded for any image size. Other formats
are written by PIL, which needs the whole 8-bit image in memory.
"""
from __future__ import annotations

import mmap
import os
import struct
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from ffnet.superres.models import FFNetSR

DEFAULT_IN_MEMORY_LIMIT = 256 * 2**20
PNG_BAND_BYTES = 2**20  # raw bytes per PNG band (rows filtered and compressed together; ~10x in int16 temporaries)


def _scale_and_radius(model: nn.Module, overlap: int | None) -> tuple[int, int]:
    if not isinstance(model, FFNetSR):
        raise TypeError(f"expected an FFNetSR model, got {type(model).__name__}")
    overlap = model.receptive_radius if overlap is None else overlap
    return model.scale, overlap


def tile_boxes(height: int, width: int, tile: int, overlap: int
               ) -> Iterator[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """Row-major ``((top, bottom, left, right) kept, (top, bottom, left, right) with context)`` in LR pixels."""
    if tile < 1 or overlap < 0:
        raise ValueError(f"tile must be >= 1 and overlap >= 0, got tile={tile}, overlap={overlap}")
    for top in range(0, height, tile):
        bottom = min(top + tile, height)
        for left in range(0, width, tile):
            right = min(left + tile, width)
            yield (top, bottom, left, right), (max(top - overlap, 0), min(bottom + overlap, height),
                                               max(left - overlap, 0), min(right + overlap, width))


@torch.no_grad()
def upscale_tiled(model: nn.Module, lr: torch.Tensor, tile: int = 256, overlap: int | None = None) -> torch.Tensor:
    """``(B, 3, H, W) → (B, 3, s H, s W)`` float, by tiles of ``tile`` LR pixels with ``overlap`` context.

    ``overlap`` defaults to the model's receptive radius (exact equality with one pass). The whole
    output is one float tensor: for images use :func:`upscale_image`, whose memory is bounded.
    """
    scale, overlap = _scale_and_radius(model, overlap)
    if lr.dim() != 4 or lr.shape[1] != 3:
        raise ValueError(f"expected an RGB batch (B, 3, H, W), got {tuple(lr.shape)}")
    height, width = lr.shape[-2:]
    output = lr.new_empty(lr.shape[0], 3, height * scale, width * scale)
    for (top, bottom, left, right), (ctop, cbottom, cleft, cright) in tile_boxes(height, width, tile, overlap):
        patch = model(lr[..., ctop:cbottom, cleft:cright])
        y0, x0 = (top - ctop) * scale, (left - cleft) * scale
        output[..., top * scale: bottom * scale, left * scale: right * scale] = (
            patch[..., y0: y0 + (bottom - top) * scale, x0: x0 + (right - left) * scale])
    return output


@torch.no_grad()
def upscale_image(model: nn.Module, image: np.ndarray, out: np.ndarray, tile: int = 256, overlap: int | None = None,
                  on_band_done=None) -> np.ndarray:
    """Upscale an 8-bit RGB ``image`` ``(H, W, 3)`` into ``out`` ``(s H, s W, 3)`` uint8, tile by tile.

    Each tile is converted to float in [0, 1] on the model's device and its output is clamped to
    [0, 1], scaled by 255 and rounded (what :func:`~ffnet.superres.metrics.tensor_to_uint8` does to a
    whole output), so the result equals that of one pass over the whole image. ``on_band_done(start,
    stop)`` is called with the output rows that are final after each row of tiles.
    """
    scale, overlap = _scale_and_radius(model, overlap)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an 8-bit RGB image (H, W, 3), got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    if out.shape != (height * scale, width * scale, 3) or out.dtype != np.uint8:
        raise ValueError(f"out must be uint8 of shape {(height * scale, width * scale, 3)}, got {out.dtype} {out.shape}")
    parameter = next(model.parameters())
    for (top, bottom, left, right), (ctop, cbottom, cleft, cright) in tile_boxes(height, width, tile, overlap):
        region = torch.from_numpy(np.array(image[ctop:cbottom, cleft:cright]))  # a copy: the input may be read-only
        lr = region.to(parameter.device).permute(2, 0, 1).unsqueeze(0).to(parameter.dtype).div_(255)
        patch = model(lr)[0]
        y0, x0 = (top - ctop) * scale, (left - cleft) * scale
        kept = patch[:, y0: y0 + (bottom - top) * scale, x0: x0 + (right - left) * scale]
        pixels = kept.float().clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        out[top * scale: bottom * scale, left * scale: right * scale] = pixels
        if right == width and on_band_done is not None:
            on_band_done(top * scale, bottom * scale)
    return out


class OutputBuffer:
    """An ``(H, W, 3)`` uint8 array: in memory below ``in_memory_limit`` bytes, else memory-mapped to a
    temporary file in ``folder`` (removed by :meth:`close`) whose pages :meth:`release` hands back."""

    def __init__(self, shape: tuple[int, int, int], folder: str | os.PathLike, name: str,
                 in_memory_limit: int = DEFAULT_IN_MEMORY_LIMIT):
        self.shape = shape
        nbytes = int(np.prod(shape))
        self.row_bytes = shape[1] * shape[2]
        self.path: Path | None = None
        self._mmap: mmap.mmap | None = None
        if nbytes <= in_memory_limit:
            self.array = np.empty(shape, np.uint8)
            return
        self.path = Path(folder) / f".{name}.buffer.{os.getpid()}.ffnet-tmp"
        with open(self.path, "w+b") as f:
            f.truncate(nbytes)
            self._mmap = mmap.mmap(f.fileno(), nbytes)
        self.array = np.frombuffer(self._mmap, np.uint8).reshape(shape)

    @property
    def mapped(self) -> bool:
        return self._mmap is not None

    def release(self, start: int, stop: int) -> None:
        """Drop rows ``start:stop`` from this process's memory (a mapped buffer keeps them in its file)."""
        if self._mmap is None:
            return
        begin = start * self.row_bytes // mmap.PAGESIZE * mmap.PAGESIZE
        end = min(stop * self.row_bytes, len(self._mmap))
        if end > begin:
            self._mmap.madvise(mmap.MADV_DONTNEED, begin, end - begin)

    def close(self) -> None:
        self.array = None
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:  # a view is still referenced (e.g. by a traceback): the collector closes it
                pass
            self._mmap = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "OutputBuffer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _paeth_filter(rows: np.ndarray, above: np.ndarray) -> np.ndarray:
    """PNG filter type 4 of ``rows`` ``(n, W*3)`` uint8 given the row ``above`` the first; ``(n, 1 + W*3)``."""
    raw = rows.astype(np.int16)
    up = np.concatenate([above[None].astype(np.int16), raw[:-1]])
    left = np.zeros_like(raw)
    left[:, 3:] = raw[:, :-3]
    up_left = np.zeros_like(raw)
    up_left[:, 3:] = up[:, :-3]
    estimate = left + up - up_left
    to_left, to_up, to_up_left = np.abs(estimate - left), np.abs(estimate - up), np.abs(estimate - up_left)
    predictor = np.where((to_left <= to_up) & (to_left <= to_up_left), left, np.where(to_up <= to_up_left, up, up_left))
    filtered = (raw - predictor).astype(np.uint8)
    return np.concatenate([np.full((len(rows), 1), 4, np.uint8), filtered], axis=1)


def write_png_bands(image: np.ndarray, target, band_rows: int | None = None, on_band_read=None,
                    compress_level: int = 6) -> None:
    """Write ``image`` ``(H, W, 3)`` uint8 as an 8-bit RGB PNG to the open binary file ``target``.

    Rows are filtered (Paeth) and compressed ``band_rows`` at a time (default: about 1 MiB of
    pixels), so only one band is in memory; ``on_band_read(start, stop)`` is called after each band.
    """
    height, width = image.shape[:2]
    row_bytes = width * 3
    band_rows = band_rows or max(1, PNG_BAND_BYTES // row_bytes)
    target.write(b"\x89PNG\r\n\x1a\n")
    target.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
    compressor = zlib.compressobj(compress_level)
    above = np.zeros(row_bytes, np.uint8)
    for start in range(0, height, band_rows):
        stop = min(start + band_rows, height)
        rows = np.ascontiguousarray(image[start:stop]).reshape(stop - start, row_bytes)
        data = compressor.compress(_paeth_filter(rows, above).tobytes())
        above = rows[-1].copy()
        if data:
            target.write(_png_chunk(b"IDAT", data))
        if on_band_read is not None:
            on_band_read(start, stop)
    target.write(_png_chunk(b"IDAT", compressor.flush()))
    target.write(_png_chunk(b"IEND", b""))


def upscale_file(model: FFNetSR, source: str | os.PathLike, target: str | os.PathLike, tile: int = 256,
                 overlap: int | None = None, in_memory_limit: int = DEFAULT_IN_MEMORY_LIMIT
                 ) -> tuple[tuple[int, int], tuple[int, int]]:
    """Upscale an 8-bit RGB image file into ``target`` atomically; returns the input and output ``(H, W)``.

    Raises ``FileNotFoundError`` / ``ValueError`` (one line naming the file, the problem and the fix) for
    a missing, unreadable, truncated or non-RGB input, a missing output folder or an unknown output format.
    """
    from ffnet.engine.files import atomic_path
    from ffnet.superres.data import check_output_image_path, read_rgb, write_rgb

    target = Path(target)
    image_format = check_output_image_path(target)
    image = read_rgb(source, any_size=True, copy=False)
    height, width = image.shape[:2]
    scale = model.scale
    with OutputBuffer((height * scale, width * scale, 3), target.parent, target.name, in_memory_limit) as buffer:
        upscale_image(model, image, buffer.array, tile=tile, overlap=overlap, on_band_done=buffer.release)
        del image
        if image_format == "PNG":
            with atomic_path(target) as tmp, open(tmp, "wb") as f:
                write_png_bands(buffer.array, f, on_band_read=buffer.release)
        else:
            write_rgb(buffer.array, target)
        shape = buffer.shape[:2]
    return (height, width), shape
