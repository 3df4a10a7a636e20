"""``ffnet segmentation export``: fold a trained FFNet segmentor (UperNet or FFNet-seg) for deployment.

``bench`` comes from the benchmark.
"""
from __future__ import annotations

from ffnet.engine.openmmlab.commands import add_export_verb


def register(subparsers) -> None:
    group = subparsers.add_parser("segmentation", help="semantic segmentation: FFNet UperNet and FFNet-seg (mmseg)")
    verbs = group.add_subparsers(dest="verb", required=True)
    add_export_verb(verbs, "segmentor", "ffnet.segmentation.deploy", "backbone features and logits")
