"""``ffnet classification ...``: ``export`` (ONNX of the deployed model); ``bench`` comes from the benchmark.

Training and evaluation use the generic ``ffnet train CONFIG`` / ``ffnet test CONFIG --checkpoint FILE``
with the shipped ImageNet configs.
"""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    group = subparsers.add_parser("classification", help="ImageNet classification: FFNet-1..4 in timm")
    verbs = group.add_subparsers(dest="verb", required=True)
    export = verbs.add_parser("export", help="export a deployed (re-parameterized) model to ONNX, checked with "
                                             "onnxruntime")
    from ffnet.classification import export as export_module

    export_module.add_arguments(export)
    export.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from ffnet.classification.export import main

    return main(args)
