"""Evaluation: softmax voting over TTA fragments per original point, and mIoU / mAcc / allAcc.

The protocol of Pointcept's ``SemSegTester``: every TTA view of a scene is grid-sampled in test
mode into fragments that together cover every point; each fragment runs through the model alone,
its softmax is added to its points' accumulators (``index``), and the prediction is the argmax.
Metrics accumulate per-class intersection, union and target over all scenes, ignoring label -1:
``mIoU = mean_c I/(U + 1e-10)``, ``mAcc = mean_c I/(T + 1e-10)``, ``allAcc = ΣI / ΣT``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.runner import BaseLoop

from ffnet.engine.files import atomic_path
from ffnet.pointcloud.data import collate_fn
from ffnet.pointcloud.registry import LOOPS, METRICS


def intersection_and_union(pred: np.ndarray, target: np.ndarray, num_classes: int,
                           ignore_index: int = -1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class ``(intersection, union, target)`` counts ``(K,)`` of labels ``(N,)``, skipping ``ignore_index``."""
    pred, target = np.asarray(pred).reshape(-1), np.asarray(target).reshape(-1)
    if pred.shape != target.shape:
        raise ValueError(f"pred has {pred.shape[0]} labels but target has {target.shape[0]}")
    valid = target != ignore_index
    pred, target = pred[valid], target[valid]
    if target.size and (target.min() < 0 or target.max() >= num_classes):
        raise ValueError(f"target labels must lie in [0, {num_classes}) or equal {ignore_index}")
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f"predicted labels must lie in [0, {num_classes})")
    intersection = np.bincount(target[pred == target], minlength=num_classes)
    area_pred = np.bincount(pred, minlength=num_classes)
    area_target = np.bincount(target, minlength=num_classes)
    return intersection, area_pred + area_target - intersection, area_target


def segmentation_metrics(intersection: np.ndarray, union: np.ndarray, target: np.ndarray) -> dict:
    """``mIoU``, ``mAcc``, ``allAcc`` and per-class ``iou`` / ``acc`` from accumulated counts ``(K,)``."""
    iou = intersection / (union + 1e-10)
    acc = intersection / (target + 1e-10)
    return dict(mIoU=float(iou.mean()), mAcc=float(acc.mean()),
                allAcc=float(intersection.sum() / (target.sum() + 1e-10)), iou=iou, acc=acc)


@torch.no_grad()
def vote_fragments(predict: Callable[[dict], torch.Tensor], fragments: Sequence[Mapping], num_points: int,
                   num_classes: int, device: torch.device | str = "cpu", progress: bool = False) -> torch.Tensor:
    """Sum of ``softmax(predict(fragment))`` per original point: ``(num_points, num_classes)``.

    ``predict`` maps a collated fragment (Pointcept's keys plus ``index``) to logits ``(n, K)``; each
    fragment is run alone (fragment batch size 1). Raises if some point is covered by no fragment.
    """
    votes = torch.zeros(num_points, num_classes, device=device)
    covered = torch.zeros(num_points, dtype=torch.bool, device=device)
    iterator = fragments
    if progress:
        from tqdm import tqdm

        iterator = tqdm(fragments, desc="fragments", leave=False)
    for fragment in iterator:
        batch = collate_fn([fragment])
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        index = batch["index"]
        votes.index_add_(0, index, torch.softmax(predict(batch).float(), dim=-1))
        covered[index] = True
    if not covered.all():
        raise RuntimeError(f"{int((~covered).sum())} of {num_points} points are in no fragment: the test "
                           "voxelization must be GridSample(mode='test') without a crop that drops points")
    return votes


@METRICS.register_module()
class SemSegMetric(BaseMetric):
    """mIoU / mAcc / allAcc over a dataset; samples carry ``seg_logits`` or ``pred`` and ``segment``.

    When a sample has ``origin_segment`` and ``inverse`` (upstream val pipelines), predictions on the
    voxels are mapped back and scored on the original points.
    """

    default_prefix = ""

    def __init__(self, num_classes: int, ignore_index: int = -1, class_names: Sequence[str] | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.class_names = list(class_names) if class_names is not None else None

    def process(self, data_batch, data_samples: Sequence[Mapping]) -> None:
        for sample in data_samples:
            pred = sample["pred"] if "pred" in sample else sample["seg_logits"].argmax(1)
            target = sample["segment"]
            if "origin_segment" in sample and "inverse" in sample:
                pred, target = pred[sample["inverse"]], sample["origin_segment"]
            counts = intersection_and_union(torch.as_tensor(pred).cpu().numpy(),
                                            torch.as_tensor(target).cpu().numpy(), self.num_classes, self.ignore_index)
            self.results.append(np.stack(counts))

    def compute_metrics(self, results: list) -> dict:
        intersection, union, target = np.sum(results, axis=0)
        metrics = segmentation_metrics(intersection, union, target)
        names = self.class_names or [str(c) for c in range(self.num_classes)]
        lines = [f"{name:>20s}  IoU {i:.4f}  Acc {a:.4f}" for name, i, a in zip(names, metrics["iou"], metrics["acc"])]
        from mmengine.logging import print_log

        print_log("per-class results:\n" + "\n".join(lines), logger="current")
        return {key: metrics[key] for key in ("mIoU", "mAcc", "allAcc")}


@LOOPS.register_module()
class FragmentTestLoop(BaseLoop):
    """Runner test loop: TTA fragment voting per scene, predictions saved as ``<save_dir>/<scene>_pred.npy``.

    The test dataset must be built with ``test_mode=True`` (items ``dict(fragment_list, segment, name)``)
    and loaded with batch size 1 (collate ``first_item``). Predictions already saved are reused.
    """

    def __init__(self, runner, dataloader, evaluator, save_dir: str | None = None):
        super().__init__(runner, dataloader)
        self.evaluator = runner.build_evaluator(evaluator)
        self.save_dir = Path(save_dir or os.path.join(runner.work_dir, "result"))

    def run(self) -> dict:
        self.runner.call_hook("before_test")
        self.runner.call_hook("before_test_epoch")
        model = self.runner.model
        model.eval()
        module = model.module if hasattr(model, "module") else model
        device = next(module.parameters()).device
        num_classes = module.segmentor.num_classes
        self.save_dir.mkdir(parents=True, exist_ok=True)
        for idx, scene in enumerate(self.dataloader):
            self.runner.call_hook("before_test_iter", batch_idx=idx, data_batch=scene)
            path = self.save_dir / f"{scene['name']}_pred.npy"
            if path.is_file():
                pred = np.load(path)
            else:
                votes = vote_fragments(module.predict_logits, scene["fragment_list"], len(scene["segment"]),
                                       num_classes, device)
                pred = votes.argmax(1).cpu().numpy()
                with atomic_path(path) as tmp, open(tmp, "wb") as f:  # np.save would add .npy to a name
                    np.save(f, pred)
            self.evaluator.process(data_samples=[dict(pred=pred, segment=scene["segment"])], data_batch=None)
            self.runner.logger.info(f"test {idx + 1}/{len(self.dataloader)}: {scene['name']} "
                                    f"({len(scene['fragment_list'])} fragments, {len(pred)} points)")
            self.runner.call_hook("after_test_iter", batch_idx=idx, data_batch=scene, outputs=None)
        metrics = self.evaluator.evaluate(len(self.dataloader.dataset))
        self.runner.call_hook("after_test_epoch", metrics=metrics)
        self.runner.call_hook("after_test")
        return metrics
