"""``ffnet classification export``: a deployed (re-parameterized) timm classifier to ONNX, checked with onnxruntime.

    ffnet classification export ffnet_1 --out ffnet_1.onnx --checkpoint ffnet_1.pth.tar --img-size 256

The model is built with timm (``ffnet_1`` … ``ffnet_4`` or any timm name), the checkpoint is loaded
through timm's loader (the model's checkpoint filter included), every re-parameterizable unit is
folded (``ffnet.core.reparameterize``, then timm's ``reparameterize_model`` for other families),
and the ONNX graph's outputs are compared with PyTorch's on the same random batch.
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from ffnet.engine.files import atomic_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL_NAME", help="timm model name, e.g. ffnet_1")
    parser.add_argument("--out", required=True, type=Path, help="ONNX file to write")
    parser.add_argument("--checkpoint", type=Path,
                        help="weights to load (timm/release .pth.tar, DeiT-style, or written by ffnet train)")
    parser.add_argument("--ema", action="store_true", help="take timm's state_dict_ema from the checkpoint")
    parser.add_argument("--num-classes", type=int, help="classifier outputs (default: the model's / checkpoint's)")
    parser.add_argument("--img-size", type=int, default=256, help="input height and width (default 256)")
    parser.add_argument("--batch-size", type=int, default=1, help="batch size of the exported graph (default 1)")
    parser.add_argument("--dynamic-batch", action="store_true", help="make the batch dimension dynamic")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--exporter", choices=["auto", "dynamo", "torchscript"], default="auto",
                        help="torch.onnx exporter (auto: dynamo from opset 18, the tracing exporter below)")
    parser.add_argument("--atol", type=float, default=1e-3,
                        help="largest accepted |onnxruntime - torch| difference of the logits (default 1e-3)")


def build_deployed_model(model_name: str, checkpoint: Path | None = None, use_ema: bool = False,
                         num_classes: int | None = None):
    """The timm model in eval mode with all train-time branches folded."""
    import ffnet.classification  # noqa: F401  (registers ffnet_1..4)
    from ffnet.classification.training import create_timm_model
    from ffnet.core import reparameterize
    from timm.utils import reparameterize_model

    kwargs = {} if num_classes is None else dict(num_classes=num_classes)
    model = create_timm_model(model_name, checkpoint=checkpoint, use_ema=use_ema, **kwargs).eval()
    reparameterize(model)
    return reparameterize_model(model)


def export_onnx(model, out: Path, img_size: int, batch_size: int = 1, opset: int = 17,
                dynamic_batch: bool = False, exporter: str = "auto") -> tuple[str, int]:
    """Write ``model`` (``(B, 3, img_size, img_size) → (B, K)``) to ``out`` atomically.

    ``exporter``: ``'dynamo'`` (torch.export based; opset 18 and later), ``'torchscript'`` (the
    tracing exporter; any opset it supports) or ``'auto'`` (dynamo from opset 18, else torchscript).
    Returns ``(exporter used, opset written in the file)``.
    """
    import onnx
    import torch

    if exporter == "auto":
        exporter = "dynamo" if opset >= 18 else "torchscript"
    if exporter == "dynamo" and opset < 18:
        raise ValueError(f"the dynamo exporter writes opset 18 or later, got --opset {opset}: "
                         "use --exporter torchscript for older opsets")
    example = torch.randn(batch_size, 3, img_size, img_size)
    names = dict(input_names=["images"], output_names=["logits"])
    with atomic_path(out) as tmp, torch.inference_mode():
        if exporter == "dynamo":
            dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
            program = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset,
                                        dynamic_shapes=dynamic_shapes, **names)
            program.save(str(tmp))
        else:
            dynamic_axes = {"images": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
            with warnings.catch_warnings():  # torch marks the tracing exporter deprecated
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.onnx.export(model, (example,), str(tmp), dynamo=False, opset_version=opset,
                                  dynamic_axes=dynamic_axes, **names)
        written = max(entry.version for entry in onnx.load(str(tmp), load_external_data=False).opset_import
                      if entry.domain in ("", "ai.onnx"))
    return exporter, written


def compare_with_onnxruntime(model, onnx_path: Path, img_size: int, batch_size: int = 1,
                             seed: int = 0) -> tuple[float, float]:
    """``(max |onnxruntime - torch|, max |torch|)`` over the logits of one random batch."""
    import numpy as np
    import onnxruntime as ort
    import torch

    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, 3, img_size, img_size, generator=generator)
    with torch.inference_mode():
        expected = model(images).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: images.numpy()})
    if got.shape != expected.shape:
        raise AssertionError(f"onnxruntime output shape {got.shape} differs from torch's {expected.shape}")
    return float(np.abs(got - expected).max()), float(np.abs(expected).max())


def main(args: argparse.Namespace) -> int:
    if args.img_size < 32:
        raise ValueError(f"--img-size must be at least 32 (the models downsample by 32), got {args.img_size}")
    model = build_deployed_model(args.model, args.checkpoint, args.ema, args.num_classes)
    exporter, opset = export_onnx(model, args.out, args.img_size, args.batch_size, args.opset, args.dynamic_batch,
                                  args.exporter)
    diff, scale = compare_with_onnxruntime(model, args.out, args.img_size, args.batch_size)
    print(f"wrote {args.out} ({exporter} exporter, opset {opset}, input {args.batch_size}x3x{args.img_size}x"
          f"{args.img_size}{', dynamic batch' if args.dynamic_batch else ''})")
    print(f"max abs diff onnxruntime vs torch: {diff:.3g} (largest |logit| {scale:.3g})")
    if diff > args.atol:
        print(f"error: the difference exceeds --atol {args.atol:g}")
        return 1
    return 0
