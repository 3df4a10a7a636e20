"""mmengine integration: the FFNet-SR training model, and what configs import.

Importing this module registers, in mmengine's root registries,

* ``MODELS``: ``FFNetSRModel`` (L1 + FFT loss in ``'loss'`` mode, images in ``'predict'`` mode);
* ``DATASETS``: ``PairedImageFolder`` (:mod:`ffnet.superres.data`);
* ``METRICS``: ``SRPSNRSSIM`` (:mod:`ffnet.superres.metrics`).

Configs load it with ``custom_imports=dict(imports=['ffnet.superres.engine'])``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModel
from mmengine.registry import MODELS

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
            :func:`~ffnet.superres.checkpoint.generator_state_dict` reads, the authors' included);
            tensors whose shape differs (the x2 reconstruction conv in an x3/x4 model) are skipped.
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
        super().init_weights()
        if self.init_from is None:
            return
        if not Path(self.init_from).is_file():
            raise FileNotFoundError(f"init_from checkpoint {self.init_from} does not exist")
        source = generator_state_dict(self.init_from)
        target = self.generator.state_dict()
        unknown = sorted(set(source) - set(target))
        if unknown:
            raise ValueError(f"init_from {self.init_from} is not an FFNet-SR checkpoint of this layout: "
                             f"unexpected keys {unknown[:4]}")
        matching = {k: v for k, v in source.items() if v.shape == target[k].shape}
        skipped = sorted(set(target) - set(matching))
        self.generator.load_state_dict(matching, strict=False)
        print_log(f"initialised {len(matching)}/{len(target)} generator tensors from {self.init_from}; "
                  f"kept the fresh initialisation of {skipped}", logger="current")

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
