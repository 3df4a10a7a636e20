"""``ffnet detection export``: fold a trained FFNet detector for deployment; ``bench`` comes from the benchmark."""
from __future__ import annotations

from ffnet.engine.openmmlab.commands import add_export_verb


def register(subparsers) -> None:
    group = subparsers.add_parser("detection", help="object detection: FFNet Cascade Mask R-CNN (mmdet)")
    verbs = group.add_subparsers(dest="verb", required=True)
    add_export_verb(verbs, "detector", "ffnet.detection.deploy", "backbone features")
