"""Checkpoint containers: where the state dict sits in a loaded file, whatever model it belongs to.

A file holds a flat ``{name: tensor}`` dict, or one under ``state_dict`` / ``model`` / ``module`` (with mmcv's
``meta`` beside it), or timm's training-script layout (model and EMA weights side by side). Nothing here looks
at the keys themselves: that is the model side's business (:mod:`mmlk.models.weights.keys`).
"""
from collections import OrderedDict
from typing import Any, Mapping, Optional, Tuple

import torch

from .errors import CheckpointError


def unwrap_state_dict(obj: Any) -> Tuple['OrderedDict[str, torch.Tensor]', dict, str]:
    """Find the state dict in a loaded checkpoint object.

    Returns ``(state_dict, meta, container)`` where container names where it was found
    (``'flat'``, ``'state_dict'``, ``'model'``, ``'module'``).
    """
    meta: dict = {}
    container = 'flat'
    if isinstance(obj, Mapping):
        if isinstance(obj.get('meta'), Mapping):
            meta = dict(obj['meta'])
        for key in ('state_dict', 'model', 'module'):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj, container = inner, key
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError('the file holds no state dict (expected a dict of tensors, possibly under '
                              '"state_dict" or "model")')
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f'the file\'s top level mixes tensors and other objects ({bad[:5]}); it is not a '
                              'state dict nor a known checkpoint container (state_dict / model)')
    state = OrderedDict((str(k), v) for k, v in obj.items())
    # Weights saved from a DataParallel / DistributedDataParallel wrapper.
    if all(k.startswith('module.') for k in state):
        state = OrderedDict((k[len('module.'):], v) for k, v in state.items())
    return state, meta, container


#: timm's ``train.py`` (CheckpointSaver) writes ``{state_dict, [state_dict_ema], optimizer, epoch, arch, args,
#: version, metric, amp_scaler}``; StarNet-recipe ``*.pth.tar`` releases use it.
TIMM_TRAIN_FORMAT = 'timm-train'
_TIMM_TRAIN_MARKERS = ('state_dict_ema', 'epoch', 'arch', 'version', 'optimizer', 'args')


def is_timm_train_checkpoint(obj: Any) -> bool:
    """True for a checkpoint written by timm's training script (model weights under ``state_dict``)."""
    return (isinstance(obj, Mapping) and isinstance(obj.get('state_dict'), Mapping)
            and sum(k in obj for k in _TIMM_TRAIN_MARKERS) >= 2)


def select_timm_train_weights(obj: Mapping, ema: Optional[bool] = None) -> Tuple[Mapping, str]:
    """Pick the model (``state_dict``) or EMA (``state_dict_ema``) weights of a timm train-script file.

    Args:
        obj: the loaded checkpoint (see :func:`is_timm_train_checkpoint`).
        ema: True for the EMA weights (an error if the file has none), False for the raw model
            weights, None for the raw model weights (what timm's ``validate.py`` loads by default).

    Returns:
        ``(weights, key)`` with key ``'state_dict'`` or ``'state_dict_ema'``.
    """
    if ema:
        inner = obj.get('state_dict_ema')
        if not isinstance(inner, Mapping) or not inner:
            raise CheckpointError('the timm training checkpoint holds no EMA weights ("state_dict_ema"): it was '
                                  'trained without --model-ema. Load its model weights instead (ema=False).')
        return inner, 'state_dict_ema'
    return obj['state_dict'], 'state_dict'
