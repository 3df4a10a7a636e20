"""Per-point labels for one scene from a standalone-trainer checkpoint, and a top-down PNG of them."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ffnet.pointcloud.tester import intersection_and_union, segmentation_metrics, vote_fragments


def load_checkpoint_and_config(checkpoint: str | os.PathLike, config: str | os.PathLike | None = None):
    """``(state_dict, runner_config)``: the config saved in the checkpoint, or the translated ``config`` if given."""
    from mmengine.config import Config

    from ffnet.pointcloud.trainer import load_pointcept_config, to_runner_config

    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if config is not None:
        runner_cfg = to_runner_config(load_pointcept_config(config), work_dir=".")
    elif "cfg" in state.get("meta", {}):
        runner_cfg = Config.fromstring(state["meta"]["cfg"], ".py")
    else:
        raise ValueError(f"{checkpoint} carries no config (not written by `ffnet pc train`): pass --config")
    weights = state.get("state_dict", state)
    return weights, runner_cfg


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
    fig.savefig(path, dpi=120, bbox_inches="tight")
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
    prefix = "segmentor."
    segmentor.load_state_dict({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)})
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
    np.save(npy, labels)
    names = list(runner_cfg.test_evaluator.class_names)
    plot_top_down(raw["coord"], labels, names, png, title=f"{name}: predicted classes")
    result = dict(labels=labels, npy=npy, png=png)
    if (item["segment"] != -1).any():
        intersection, union, target = intersection_and_union(labels, item["segment"], segmentor.num_classes, -1)
        metrics = segmentation_metrics(intersection, union, target)
        result.update(mIoU=float(metrics["iou"][union > 0].mean()), allAcc=metrics["allAcc"])
    return result
