"""mmengine integration: the FFNet-SR training model, and what configs import.

Importing this module registers, in mmengine's root registries,

* ``MODELS``: ``FFNetSRModel`` (L1 + FFT loss in ``'loss'`` mode, images in ``'predict'`` mode);
* ``DATASETS``: ``PairedImageFolder`` (:mod:`ffnet.superres.data`);
* ``METRICS``: ``SRPSNRSSIM`` (:mod:`ffnet.superres.metrics`).

Configs load it with ``custom_imports=dict(imports=['ffnet.superres.engine'])``.
"""
from __future__ import annotations

import torch
from mmengine.model import BaseModel
from mmengine.registry import MODELS

from ffnet.engine.checkpoints import compare_state_dict, load_state_dict
from ffnet.superres import data as _data  # noqa: F401  (registers PairedImageFolder)
from ffnet.superres import metrics as _metrics  # noqa: F401  (registers SRPSNRSSIM)
from ffnet.superres.checkpoint import generator_state_dict
from ffnet.superres.losses import SRLoss
from ffnet.superres.models import FFNetSR, build_model
from ffnet.superres.upscale import upscale_tiled


@MODELS.register_module()
class FFNetSRModel(BaseModel):
    """Wraps :class:`~ffnet.superres.models.FFNetSR` (attribute ``generator``) for the Runner.

    Args:
        generator: ``dict(variant='ffnet_sr' | 'ffnet_sr_light', scale=...)`` plus any
            :class:`FFNetSR` argument override (``dim``, ``depth``, ``expansion``, ``norm``).
        fft_weight: weight of the frequency L1 term (release 0.02, paper 0.05).
        test_tile: LR tile size for whole-image prediction (``None``: one pass, the paper's protocol).
        init_from: checkpoint to initialise the generator from in :meth:`init_weights` (any format
            :func:`~ffnet.superres.checkpoint.generator_state_dict` reads, the authors' included); the load is
            strict except for the reconstruction conv of another scale (x2 weights for an x3/x4 model),
            which is skipped with one summary line.
    """

    def __init__(self, generator: dict, fft_weight: float = 0.02, test_tile: int | None = None,
                 init_from: str | None = None, data_preprocessor: dict | None = None, init_cfg: dict | None = None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        generator = dict(generator)
        self.generator: FFNetSR = build_model(generator.pop("variant", "ffnet_sr"), **generator)
        self.criterion = SRLoss(fft_weight)
        self.test_tile = test_tile
        self.init_from = init_from

    def init_weights(self) -> None:
        """Load ``init_from`` into the generator: strictly, except that a reconstruction conv of another
        scale (an x2 checkpoint for an x3/x4 model) is skipped, with one summary line."""
        super().init_weights()
        if self.init_from is None:
            return
        state = generator_state_dict(self.init_from)
        report = compare_state_dict(self.generator.state_dict(), state)
        other_scale = bool(report.mismatched) and not report.missing and not report.unexpected and all(
            key.startswith("reconstruction_conv.") for key, _, _ in report.mismatched)
        load_state_dict(self.generator, state, source=str(self.init_from), strict=not other_scale,
                        target=f"the FFNet-SR x{self.generator.scale} generator")

    def forward(self, inputs: torch.Tensor, data_samples: dict | None = None, mode: str = "tensor"):
        """``inputs``: LR ``(B, 3, H, W)``; ``data_samples['gt']``: HR ``(B, 3, sH, sW)``."""
        if mode == "tensor":
            return self.generator(inputs)
        if mode == "loss":
            if data_samples is None or "gt" not in data_samples:
                raise ValueError("'loss' mode needs data_samples with the HR images under 'gt'")
            return self.criterion(self.generator(inputs), data_samples["gt"])
        if mode == "predict":
            if self.test_tile is None:
                prediction = self.generator(inputs)
            else:
                prediction = upscale_tiled(self.generator, inputs, tile=self.test_tile)
            return self._predictions(prediction, data_samples or {})
        raise ValueError(f"mode must be 'tensor', 'loss' or 'predict', got {mode!r}")

    def _predictions(self, prediction: torch.Tensor, data_samples: dict) -> list[dict]:
        results = []
        for i, pred in enumerate(prediction):
            result = dict(pred=pred, scale=self.generator.scale)
            for key in ("gt", "name", "dataset"):
                if key in data_samples:
                    result[key] = data_samples[key][i]
            results.append(result)
        return results
