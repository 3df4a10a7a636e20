"""Peak memory of ``ffnet superres upscale`` against image size: bounded by the tile, not the image.

Each size runs in its own Python process (read the PNG, upscale tile by tile, write the PNG), and
the process's peak resident memory (its high-water mark ``VmHWM``: everything, numpy, torch, PIL and
the pages of the memory-mapped output) is reported beside the resident memory before
the image was read (interpreter, torch, the model), and beside what one untiled float32 pass would
need for the output alone. Large sizes use a tiny network (width 4, one block): the memory bound is
about buffers, not compute, so it holds for any width; the real FFNet-SR x2 is measured at a moderate
size. ``python -m ffnet.superres.upscale_memory --sizes 1024 4096 16384`` writes
``docs/results/superres_upscale_memory.md``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

TINY = dict(dim=4, depth=1)
SCALE = 2
MiB = 2**20


def _input_image(lr_size: int, path: Path) -> None:
    """A ``lr_size²`` photo mosaic (scikit-image's astronaut, tiled), written band by band."""
    import numpy as np
    import skimage.data

    from ffnet.superres.upscale import write_png_bands

    photo = skimage.data.astronaut()
    reps = -(-lr_size // photo.shape[0])
    image = np.tile(photo, (reps, reps, 1))[:lr_size, :lr_size]
    with open(path, "wb") as f:
        write_png_bands(image, f)


def _peak_rss() -> int:
    """This process's resident high-water mark in bytes: ``VmHWM`` (Linux: reset by exec, unlike
    ``ru_maxrss``, which a child inherits from the parent that forked it), else ``ru_maxrss``."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def _child(lr_png: str, out_png: str, variant: str, tile: int) -> dict:
    """Run in a fresh process: the RSS high-water marks before and after one upscale (bytes)."""
    import torch

    from ffnet.core import reparameterize
    from ffnet.superres.models import build_model
    from ffnet.superres.upscale import upscale_file

    torch.manual_seed(0)
    kwargs = TINY if variant == "tiny" else {}
    model = reparameterize(build_model("ffnet_sr" if variant == "tiny" else variant, SCALE, **kwargs).eval())
    before = _peak_rss()
    start = time.perf_counter()
    (h, w), (sh, sw) = upscale_file(model, lr_png, out_png, tile=tile)
    seconds = time.perf_counter() - start
    return dict(before=before, peak=_peak_rss(), seconds=seconds, lr=(h, w), out=(sh, sw))


def measure(out_size: int, variant: str = "tiny", tile: int = 256, threads: int = 1) -> dict:
    """One row: upscale an ``(out_size / 2)²`` image x2 to ``out_size²`` in a subprocess."""
    lr_size = out_size // SCALE
    with tempfile.TemporaryDirectory(prefix="ffnet-sr-memory-") as folder:
        lr_png, out_png = Path(folder) / "lr.png", Path(folder) / "out.png"
        _input_image(lr_size, lr_png)
        code = (f"import json, torch; torch.set_num_threads({threads}); from ffnet.superres.upscale_memory import _child; "
                f"print(json.dumps(_child({str(lr_png)!r}, {str(out_png)!r}, {variant!r}, {tile})))")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"the measurement of {out_size}x{out_size} failed: {done.stderr.strip()[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        output_mib = Path(out_png).stat().st_size / MiB
    pixels = out_size * out_size
    label = f"tiny (width {TINY['dim']}, depth {TINY['depth']})" if variant == "tiny" else {
        "ffnet_sr": "FFNet-SR", "ffnet_sr_light": "FFNet-SR-light"}[variant]
    return {
        "model": label, "output": f"{out_size}x{out_size}", "input": f"{lr_size}x{lr_size}", "tile": tile,
        "RSS before the image (MiB)": round(result["before"] / MiB), "peak RSS (MiB)": round(result["peak"] / MiB),
        "peak - before (MiB)": round((result["peak"] - result["before"]) / MiB),
        "8-bit input (MiB)": round(lr_size * lr_size * 3 / MiB, 1), "8-bit output (MiB)": round(pixels * 3 / MiB),
        "float32 output of one pass (MiB)": round(pixels * 12 / MiB), "PNG written (MiB)": round(output_mib, 1),
        "seconds": round(result["seconds"], 1),
    }


def memory_rows(sizes: Sequence[int], real_size: int | None = 512, tile: int = 256, threads: int = 1) -> list[dict]:
    """Rows of :func:`measure` for the tiny network at each output size, and FFNet-SR x2 at ``real_size``."""
    rows = [measure(size, "tiny", tile, threads) for size in sizes]
    if real_size:
        rows.append(measure(real_size, "ffnet_sr", tile, threads))
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    from ffnet.engine.bench import DEFAULT_OUT_DIR, BenchmarkResult, write_result

    parser = argparse.ArgumentParser(prog="python -m ffnet.superres.upscale_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384],
                        help="output sizes (square, pixels) for the tiny network (default 1024 ... 16384)")
    parser.add_argument("--real-size", type=int, default=512, help="output size for FFNet-SR x2 (0: skip)")
    parser.add_argument("--tile", type=int, default=256, help="LR tile size (default 256, the command's default)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each measurement (default 1)")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    args = parser.parse_args(argv)
    rows = memory_rows(args.sizes, args.real_size, args.tile, args.threads)
    notes = [
        f"x{SCALE}, `upscale_file` (read PNG, tiles of {args.tile} LR pixels with the receptive radius as overlap, "
        "8-bit output memory-mapped above 256 MiB, PNG written band by band), each size in a fresh process with "
        f"{args.threads} torch thread(s).",
        "RSS: the process's resident high-water mark, VmHWM (numpy, torch, PIL and mapped "
        "pages alike). 'before' is after imports and model building, before the image is read.",
        f"The tiny network (width {TINY['dim']}, depth {TINY['depth']}) stands in for FFNet-SR at large sizes: "
        "the bound is about buffers (per-tile activations scale with the width), not compute.",
        "What grows with the image is the 8-bit input (PIL decodes it whole: about 7 bytes per input pixel at the "
        "peak); the output never is in memory as a whole.",
    ]
    write_result(BenchmarkResult(name="superres_upscale_memory", title="Peak memory of tiled upscaling against "
                                 "image size, CPU", rows=rows, notes=notes), args.out_dir)


if __name__ == "__main__":
    main()
