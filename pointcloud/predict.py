"""Per-point labels for one scene from a standalone-trainer checkpoint, and a top-down PNG of them.

Checkpoints (and ``.pth`` scenes) are read weights-only; the config a checkpoint carries is read as
data, never run.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from ffnet.engine.checkpoints import config_from_text, load_file, load_state_dict, unwrap_state_dict
from ffnet.engine.errors import CheckpointError
from ffnet.engine.files import atomic_path
from ffnet.pointcloud.tester import intersection_and_union, segmentation_metrics, vote_fragments


def load_checkpoint_and_config(checkpoint: str | os.PathLike, config: str | os.PathLike | None = None):
    """``(segmentor state dict, runner_config)``: the config saved in the checkpoint, or the translated ``config``.

    The file is read weights-only (:func:`ffnet.engine.checkpoints.load_file`).
    """
    from ffnet.pointcloud.trainer import load_pointcept_config, segmentor_state_dict, to_runner_config

    source = str(checkpoint)
    state = load_file(checkpoint)
    meta = state.get("meta") if isinstance(state, Mapping) else None
    text = meta.get("cfg") if isinstance(meta, Mapping) else None
    if config is not None:
        runner_cfg = to_runner_config(load_pointcept_config(config), work_dir=".")
    elif isinstance(text, str):
        runner_cfg = config_from_text(text, source)
    else:
        raise CheckpointError(f"{source}: carries no config (it was not written by `ffnet pointcloud train`); "
                              "pass --config")
    return segmentor_state_dict(unwrap_state_dict(state, source=source)), runner_cfg


def class_colors(num_classes: int) -> np.ndarray:
    """``(K, 3)`` RGB in [0, 1]: matplotlib's tab20 up to 20 classes, evenly spaced hues beyond."""
    import matplotlib

    if num_classes <= 20:
        return np.array([matplotlib.colormaps["tab20"](i)[:3] for i in range(num_classes)])
    return matplotlib.colormaps["hsv"](np.linspace(0, 1, num_classes, endpoint=False))[:, :3]


def plot_top_down(coord: np.ndarray, labels: np.ndarray, names: Sequence[str], path: str | os.PathLike,
                  title: str = "") -> None:
    """Scatter x/y coloured by class, highest points drawn last; legend of the classes present."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    colors = class_colors(len(names))
    order = np.argsort(coord[:, 2])
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.scatter(coord[order, 0], coord[order, 1], c=colors[labels[order]], s=1.5, linewidths=0)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title(title)
    present = np.unique(labels)
    ax.legend(handles=[Patch(color=colors[c], label=names[c]) for c in present], loc="upper left",
              bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


@torch.no_grad()
def predict_scene(checkpoint: str | os.PathLike, scene: str | os.PathLike, out_dir: str | os.PathLike = ".",
                  config: str | os.PathLike | None = None, views: int | None = 1, device: str = "cpu") -> dict:
    """Label every original point of ``scene`` (a Pointcept ``.npy`` folder or a release ``.pth``).

    Runs the config's test pipeline (its first ``views`` TTA views; ``None`` = all) with fragment
    voting, writes ``<out_dir>/<scene>_pred.npy`` (int64 labels) and ``<scene>_pred.png``, and returns
    ``dict(labels, npy, png)`` plus, when the scene has labels, ``mIoU`` (over the classes in its
    ground truth or prediction) and ``allAcc``.
    """
    from ffnet.pointcloud.registry import DATASETS, build_in_scope
    from ffnet.pointcloud.model import build_segmentor

    weights, runner_cfg = load_checkpoint_and_config(checkpoint, config)
    test_dataset = dict(runner_cfg.test_dataloader.dataset)
    test_cfg = dict(test_dataset["test_cfg"])
    if views is not None:
        test_cfg["aug_transform"] = list(test_cfg["aug_transform"])[:views]
    test_dataset.update(test_cfg=test_cfg, scenes=[scene], test_mode=True)
    test_dataset.pop("split", None)
    dataset = build_in_scope(DATASETS, test_dataset)
    segmentor = build_segmentor(runner_cfg.model.segmentor)
    load_state_dict(segmentor, weights, source=str(checkpoint), target=f"the segmentor of {config or 'its config'}")
    segmentor.to(device).eval()

    item = dataset[0]
    raw = dataset.get_data(0)

    def logits(batch):
        return segmentor.seg_head(segmentor.backbone(batch).feat)

    votes = vote_fragments(logits, item["fragment_list"], len(item["segment"]), segmentor.num_classes, device,
                           progress=True)
    labels = votes.argmax(1).cpu().numpy()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = item["name"]
    npy, png = out_dir / f"{name}_pred.npy", out_dir / f"{name}_pred.png"
    with atomic_path(npy) as tmp, open(tmp, "wb") as f:  # a file object: np.save would add .npy to the name
        np.save(f, labels)
    names = list(runner_cfg.test_evaluator.class_names)
    plot_top_down(raw["coord"], labels, names, png, title=f"{name}: predicted classes")
    result = dict(labels=labels, npy=npy, png=png)
    if (item["segment"] != -1).any():
        intersection, union, target = intersection_and_union(labels, item["segment"], segmentor.num_classes, -1)
        metrics = segmentation_metrics(intersection, union, target)
        result.update(mIoU=float(metrics["iou"][union > 0].mean()), allAcc=metrics["allAcc"])
    return result
