"""Building OpenMMLab models from configs in a fixed registry scope, whatever scope is current.

mmengine resolves every registry build through the current ``DefaultScope``, even a build from a
package's own registry (``mmseg.registry.MODELS.build``): after a Runner of another scope (for
example the point-cloud trainer's ``'ffnet_pointcloud'``) ran in the same process, types are looked
up in that scope's registry and ``EncoderDecoder is not in the ffnet_pointcloud::model registry``
follows. :func:`build_model` builds inside ``DefaultScope.overwrite_default_scope``, which restores
the caller's scope afterwards.
"""
from __future__ import annotations

from typing import Optional

from torch import nn


def config_scope(cfg, default_scope: Optional[str] = None) -> str:
    """The registry scope of an mmengine config: its ``default_scope``, else ``default_scope``."""
    scope = cfg.get("default_scope") or default_scope
    if not scope:
        raise ValueError("the config sets no default_scope: add default_scope='mmdet' (detection) or "
                         "default_scope='mmseg' (segmentation) to it")
    return scope


def apply_custom_imports(cfg) -> None:
    """Import the config's ``custom_imports`` (e.g. ``ffnet.detection``, which registers ``FFNet``)."""
    if cfg.get("custom_imports"):
        from mmengine.utils import import_modules_from_strings

        import_modules_from_strings(**cfg.custom_imports)


def build_model(cfg, default_scope: Optional[str] = None) -> nn.Module:
    """``cfg.model`` built through mmengine's ``MODELS`` in the config's scope (see :func:`config_scope`).

    ``custom_imports`` are applied first; the current default scope is the same before and after.
    """
    from mmengine.registry import MODELS, DefaultScope

    apply_custom_imports(cfg)
    with DefaultScope.overwrite_default_scope(config_scope(cfg, default_scope)):
        return MODELS.build(cfg.model)
