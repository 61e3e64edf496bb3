"""Layer-wise learning-rate decay for RepLKNet, RepNeXt and UniRepLKNet, usable from any OpenMMLab 1.x/3.x config.

Fine-tuning a pretrained backbone works better when the layers near the input move less than the
layers near the head (BEiT, ConvNeXt). RepLKNet's README promised this for its fine-tuning recipes;
mmseg's and mmdet's decay constructors only understand ConvNeXt parameter names, and mmpretrain's
asks the backbone for a ``get_layer_depth`` method. This constructor knows both mmlk backbones (and
mmpretrain's RepLKNet, which uses the same names) and works from a classifier, a segmentor, a
detector or a bare backbone::

    custom_imports = dict(imports=['mmlk'], allow_failed_imports=False)
    optim_wrapper = dict(
        constructor='mmlk.LearningRateDecayOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
        paramwise_cfg=dict(layer_decay_rate=0.7, norm_decay_mult=0.0, bias_decay_mult=0.0))

A parameter with layer id ``i`` out of ``L`` backbone layers gets ``lr = base_lr * rate ** (L + 1 - i)``;
everything outside the backbone (neck, heads, the classifier's final norm) has id ``L + 1`` and scale 1.

Layer ids (``decay_type='layer_wise'``, the default):

* RepLKNet, following the upstream fine-tuning code (RepLKNet-pytorch ``optim_factory.py``): the stem
  is 0, stages 0 and 1 are 1 and 2, stage 2 is cut into groups of four consecutive entries of its
  ``blocks`` list (two RepLKBlock/ConvFFN pairs) numbered from 3, and the last stage is ``L``. A
  transition shares the id of the layer just before it (transition 2 goes with the last group of
  stage 2). For the published depths (2, 2, 18, 2): ``L = 12``.
* RepNeXt, following ConvNeXt's scheme (which RepNeXt's macro design descends from): the stem is 0,
  stages 0 and 1 are 1 and 2, stage 2 is cut into ``min(9, depth)`` nearly equal groups numbered from
  3, the last stage is ``L``; a stage's ``downsample`` goes with the first layer of its stage. For every
  published variant ``L = 12``.
* UniRepLKNet, following ConvNeXt's scheme as its fine-tuning code does (upstream's constructor hard-codes
  ConvNeXt's names; here the backbone gives its own ids, :meth:`UniRepLKNet.layer_ids`): the stem
  (``downsample_layers.0``) is 0, stages 0 and 1 with their downsamples 1 and 2, stage 2 in groups of three
  blocks from 3, the last stage ``L = 3 + ceil(depth / 3)`` (12 for S / B / L / XL, 9 for T, 5 for A..P).

``decay_type='stage_wise'`` gives the stem id 0 and stage ``s`` (with what belongs to it) id ``s + 1``.
"""
from typing import Callable, Dict, List, Optional, Tuple

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from torch.nn import GroupNorm, LayerNorm
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from ..models import FAMILIES, RepBackbone, RepLKNet
from ..registry import OPTIM_WRAPPER_CONSTRUCTORS

_NORM_TYPES = (_BatchNorm, _InstanceNorm, GroupNorm, LayerNorm)
DECAY_TYPES = ('layer_wise', 'stage_wise')


def layer_id_function(backbone: nn.Module) -> Callable[..., Tuple[Dict[str, int], int]]:
    """The ``layer_ids(names, decay_type)`` of a backbone: an mmlk backbone's own classmethod, or for
    mmpretrain's ``RepLKNet`` (the same parameter names; its final BN ``stages.3.norm`` counts as part of
    the last stage, where mmlk's classifier ``norm`` is outside the layers) mmlk's RepLKNet rule."""
    if isinstance(backbone, RepBackbone):
        return type(backbone).layer_ids
    if type(backbone).__name__ == 'RepLKNet':
        return RepLKNet.layer_ids
    raise TypeError(f'layer-wise lr decay supports mmlk backbones ({", ".join(f.__name__ for f in FAMILIES)}) and '
                    f'mmpretrain\'s RepLKNet, got {type(backbone).__name__}; use the host library\'s own '
                    'constructor for other backbones')


def _find_backbone(model: nn.Module, prefix: Optional[str]) -> Tuple[nn.Module, str]:
    """The backbone module and its parameter-name prefix inside ``model``."""
    if prefix is None:
        if isinstance(model, RepBackbone) or type(model).__name__ == 'RepLKNet':
            return model, ''
        if isinstance(getattr(model, 'backbone', None), nn.Module):
            return model.backbone, 'backbone.'
        raise TypeError(f'cannot find the backbone of {type(model).__name__}: it has no `backbone` '
                        'attribute; set paramwise_cfg.backbone_prefix to the backbone\'s name prefix')
    if prefix and not prefix.endswith('.'):
        prefix += '.'
    module = model.get_submodule(prefix[:-1]) if prefix else model
    return module, prefix


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LearningRateDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Optimizer-wrapper constructor with layer-wise learning-rate decay for mmlk backbones.

    The decay schedule follows the fine-tuning code of RepLKNet (Ding et al., "Scaling Up Your Kernels
    to 31x31", CVPR 2022), which adapts BEiT's layer decay to convolutional stages; see the module
    docstring for the layer ids.

    Args:
        optim_wrapper_cfg: The optimizer-wrapper config (``optimizer`` with ``lr`` and usually
            ``weight_decay``), as for mmengine's ``DefaultOptimWrapperConstructor``.
        paramwise_cfg: Options:

            - ``layer_decay_rate`` (float, required): the per-layer factor, in (0, 1].
            - ``decay_type`` (str): ``'layer_wise'`` (default) or ``'stage_wise'``.
            - ``backbone_prefix`` (str, optional): name prefix of the backbone; found automatically
              for a bare backbone and for models with a ``backbone`` attribute.
            - ``norm_decay_mult``, ``bias_decay_mult``, ``flat_decay_mult`` (float, optional):
              weight-decay multipliers for norm-layer parameters, other biases, and other 1-D
              parameters (mmengine's meaning and precedence; 0 switches weight decay off for them).
            - ``custom_keys`` (dict, optional): ``{substring: dict(lr_mult=..., decay_mult=...)}``;
              the longest matching key's multipliers apply on top of the layer scale.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        cfg = self.paramwise_cfg
        if 'layer_decay_rate' not in cfg:
            raise ValueError('paramwise_cfg.layer_decay_rate is required by '
                             'LearningRateDecayOptimWrapperConstructor (e.g. 0.7)')
        rate = cfg['layer_decay_rate']
        if not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise ValueError(f'paramwise_cfg.layer_decay_rate must be a number in (0, 1], got {rate!r}')
        if cfg.get('decay_type', 'layer_wise') not in DECAY_TYPES:
            raise ValueError(f'paramwise_cfg.decay_type must be one of {DECAY_TYPES}, '
                             f'got {cfg.get("decay_type")!r}')
        if self.base_lr is None:
            raise ValueError('the optimizer config needs an explicit `lr` for layer-wise lr decay')

    def layer_ids(self, model: nn.Module) -> Tuple[Dict[str, int], int]:
        """Layer id of every parameter of ``model`` (full names) and the backbone's ``num_layers``."""
        backbone, prefix = _find_backbone(model, self.paramwise_cfg.get('backbone_prefix'))
        names = [n for n, _ in backbone.named_parameters()]
        ids, num_layers = layer_id_function(backbone)(names, self.paramwise_cfg.get('decay_type', 'layer_wise'))
        full = {prefix + n: i for n, i in ids.items()}
        for name, _ in model.named_parameters():
            full.setdefault(name, num_layers + 1)  # neck, heads: no decay
        return full, num_layers

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '',
                   is_dcn_module=None) -> None:
        """Fill ``params`` with one param group per (layer, lr, weight decay) combination.

        Unlike the parent class this is called once on the whole model (mmengine calls it with the
        unwrapped model); frozen parameters are left out as in mmengine.
        """
        cfg = self.paramwise_cfg
        rate = float(cfg['layer_decay_rate'])
        ids, num_layers = self.layer_ids(module)
        custom_keys = cfg.get('custom_keys', {})
        sorted_keys = sorted(sorted(custom_keys), key=len, reverse=True)
        mults = {k: cfg.get(k) for k in ('norm_decay_mult', 'bias_decay_mult', 'flat_decay_mult')}

        groups: Dict[Tuple, dict] = {}
        seen = set()
        for mod_name, mod in module.named_modules():
            is_norm = isinstance(mod, _NORM_TYPES)
            for p_name, param in mod.named_parameters(recurse=False):
                if id(param) in seen:
                    continue  # shared parameter: its first owner decides
                seen.add(id(param))
                if not param.requires_grad:
                    continue
                name = f'{mod_name}.{p_name}' if mod_name else p_name
                layer = ids[name]
                scale = rate ** (num_layers + 1 - layer)
                lr, wd = self.base_lr * scale, self.base_wd
                if wd is not None:
                    # mmengine's precedence: norm, then bias, then other 1-D parameters.
                    if is_norm and mults['norm_decay_mult'] is not None:
                        wd = self.base_wd * mults['norm_decay_mult']
                    elif p_name == 'bias' and mults['bias_decay_mult'] is not None:
                        wd = self.base_wd * mults['bias_decay_mult']
                    elif param.ndim == 1 and mults['flat_decay_mult'] is not None:
                        wd = self.base_wd * mults['flat_decay_mult']
                for key in sorted_keys:
                    if key in name:
                        lr *= custom_keys[key].get('lr_mult', 1.0)
                        if wd is not None:
                            wd *= custom_keys[key].get('decay_mult', 1.0)
                        break
                group_key = (layer, lr, wd)
                if group_key not in groups:
                    group = dict(params=[], lr=lr, layer_id=layer, lr_scale=scale)
                    if wd is not None:
                        group['weight_decay'] = wd
                    groups[group_key] = group
                groups[group_key]['params'].append(param)
        # Highest layer first: mmengine logs the first group's lr, which is then the undecayed base lr.
        params.extend(sorted(groups.values(), key=lambda g: -g['layer_id']))
        summary = ', '.join(f'{lid}: {rate ** (num_layers + 1 - lid):.4g}' for lid in range(num_layers + 2))
        print_log(f'layer-wise lr decay {rate} ({cfg.get("decay_type", "layer_wise")}): '
                  f'{num_layers} backbone layers, {len(groups)} param groups; lr scale per layer id: '
                  f'{summary}', logger='current')
