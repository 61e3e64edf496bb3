"""Checkpoint conversion (used by ``tools/model_converters/``).

* :func:`convert_downstream`: an upstream mmseg 0.x / mmdet 2.x checkpoint (mmcv ``meta`` +
  ``state_dict``, optimizer state) -> an mmengine checkpoint the shipped mm 1.x / 3.x configs load with
  ``tools/test.py``: weights only (no optimizer), ``meta.dataset_meta`` with the class names and palette
  that mmseg 1.x / mmdet 3.x read, backbone keys in mmlk's names. With a config, the weights are loaded
  into the model built from it (strict, through :func:`load_pretrained`, merging on the fly for deploy
  configs) and that model's state dict is written, so the result is guaranteed to fit the config.
* :func:`convert_classification`: an official RepLKNet / RepNeXt classification file -> an mmpretrain
  ``ImageClassifier`` checkpoint (``backbone.`` prefix; the classifier where mmlk's configs keep it, or
  mmpretrain's own RepLKNet layout with ``layout='mmpretrain'``).

Outputs are written atomically (temporary file + ``os.replace``, see :mod:`mmlk.checkpoint.atomic`) and never over the input.
"""
import copy
import os.path as osp
from collections import OrderedDict
from typing import Any, Optional

import torch

from mmlk.checkpoint.atomic import atomic_save
from mmlk.checkpoint.download import sha256sum
from mmlk.checkpoint.errors import CheckpointError
from mmlk.checkpoint.resolve import resolve_checkpoint
from . import keys as SD
from .loading import _log, load_pretrained, read_state_dict


def build_model_from_config(config: str) -> torch.nn.Module:
    """Build the model of an mmlk config (its ``default_scope`` decides mmseg / mmdet / mmpretrain).

    The backbone's ``init_cfg`` is removed first: conversion must not fetch ImageNet weights.
    """
    import mmlk  # noqa: F401  (registers mmlk's classes)
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    from mmengine.utils import import_modules_from_strings
    cfg = Config.fromfile(config)
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    model_cfg = copy.deepcopy(cfg.model)
    if isinstance(model_cfg.get('backbone'), dict):
        model_cfg['backbone'].pop('init_cfg', None)
    model_cfg.pop('init_cfg', None)
    # The config's scope only while building: callers (tests, tools) keep their own default scope.
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmengine')):
        return MODELS.build(model_cfg)


def _plain(value: Any) -> Any:
    """Meta values as plain Python (so ``torch.load(weights_only=True)`` reads the result)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def _dataset_meta(meta: dict) -> dict:
    out = {}
    if meta.get('CLASSES') is not None:
        out['classes'] = tuple(str(c) for c in meta['CLASSES'])
    if meta.get('PALETTE') is not None:
        out['palette'] = [list(map(int, p)) for p in meta['PALETTE']]
    return out


def _state_from_model(model: torch.nn.Module) -> 'OrderedDict[str, torch.Tensor]':
    return OrderedDict((k, v.detach().cpu().clone()) for k, v in model.state_dict().items())


def convert_downstream(src: str, dst: str, config: Optional[str] = None, overwrite: bool = False,
                       logger: Any = None) -> dict:
    """Convert an upstream mmseg 0.x / mmdet 2.x checkpoint; returns the written meta."""
    path, _ = resolve_checkpoint(src)
    state, meta, fmt = read_state_dict(path)
    if not any(k.startswith('backbone.') for k in state):
        raise CheckpointError(f'{src} has no backbone.* keys: not a downstream (mmseg / mmdet) checkpoint. For '
                              'classification files use tools/model_converters/convert_cls_to_mmpretrain.py')
    if config:
        model = build_model_from_config(config)
        report = load_pretrained(model, path, logger=logger)
        if report['missing'] and [k for k in report['missing'] if not k.endswith('num_batches_tracked')]:
            raise CheckpointError(f'{src} does not cover the model of {config}: '
                                  f'{[k for k in report["missing"] if not k.endswith("num_batches_tracked")][:8]}')
        state = _state_from_model(model)
    out_meta = dict(dataset_meta=_dataset_meta(meta),
                    mmlk=dict(converted_from=osp.basename(path), source_format=fmt, source_sha256=sha256sum(path),
                              config=config, source_meta={k: _plain(v) for k, v in meta.items()
                                                          if k not in ('CLASSES', 'PALETTE', 'config', 'env_info')}))
    atomic_save({'meta': out_meta, 'state_dict': state}, dst, src=path, overwrite=overwrite)
    _log(f'convert_downstream: {osp.basename(path)} ({fmt}, {len(state)} tensors) -> {dst}', logger)
    return out_meta


def convert_classification(src: str, dst: str, config: Optional[str] = None, layout: str = 'mmlk',
                           overwrite: bool = False, logger: Any = None) -> dict:
    """Convert an official classification file into an mmpretrain ``ImageClassifier`` checkpoint.

    Args:
        layout: without ``config``: ``'mmlk'`` (the layout of mmlk's classification configs: everything in the
            backbone but the keys a family keeps in the mm head, its ``mm_head_prefixes``, e.g. RepNeXt's two
            heads) or ``'mmpretrain'`` (a family's mmpretrain port: its ``mmpretrain_renames``, ``head.fc``).
    """
    path, _ = resolve_checkpoint(src)
    state, meta, fmt = read_state_dict(path)
    codec = SD.codec_of(state)
    if any(k.startswith('backbone.') for k in state) and fmt != 'mmpretrain':
        raise CheckpointError(f'{src} is a downstream checkpoint ({fmt}); use convert_downstream.py')
    if config:
        model = build_model_from_config(config)
        load_pretrained(model, path, logger=logger)
        out = _state_from_model(model)
    elif layout == 'mmlk':
        out = OrderedDict()
        for k, v in state.items():
            if k.startswith(tuple(getattr(codec, 'mm_head_prefixes', ()))):
                out[k] = v  # e.g. RepNeXtClsHead sits at `head` and keeps `head` / `head_dist` inside
            else:
                out['backbone.' + k] = v
    elif layout == 'mmpretrain':
        renames = getattr(codec, 'mmpretrain_renames', ())
        if not renames:
            ported = [fam.display_name for fam in SD.families() if getattr(fam, 'mmpretrain_renames', ())]
            raise CheckpointError(f'layout="mmpretrain" exists only for {", ".join(ported)} (the families '
                                  f'mmpretrain has a port of); this file is '
                                  f'{codec.display_name if codec else "of no known family"}')
        out = OrderedDict()
        for k, v in state.items():
            official = next(((o, t) for o, t in renames if k.startswith(o)), None)
            if official:
                out['backbone.' + official[1] + k[len(official[0]):]] = v
            elif k.startswith('head.'):
                out['head.fc.' + k[len('head.'):]] = v
            else:
                out['backbone.' + k] = v
    else:
        raise ValueError(f"layout must be 'mmlk' or 'mmpretrain', got {layout!r}")
    out_meta = dict(mmlk=dict(converted_from=osp.basename(path), source_format=fmt,
                              source_sha256=sha256sum(path), config=config, layout=None if config else layout))
    atomic_save({'meta': out_meta, 'state_dict': out}, dst, src=path, overwrite=overwrite)
    _log(f'convert_classification: {osp.basename(path)} ({fmt}, {len(out)} tensors) -> {dst}', logger)
    return out_meta
