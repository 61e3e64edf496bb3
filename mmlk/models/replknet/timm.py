"""RepLKNet for timm: ``timm.create_model('replknet_31b' | 'replknet_31l' | 'replknet_xl')`` after ``import mmlk``.

The timm adapter of :class:`~mmlk.models.replknet.RepLKNet`, in its own module so the family's ``model.py``
holds the layers and the mm backbone only.
"""
from typing import Union

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer

from ..timm_adapter import TimmAdapter, build_timm_model, register_timm_factory
from .model import RepLKNet

__all__ = ['TimmRepLKNet']


class TimmRepLKNet(TimmAdapter, RepLKNet):
    """timm-facing RepLKNet classifier: ``forward`` returns logits, keys are the official ones.

    Built by ``timm.create_model('replknet_31b' | 'replknet_31l' | 'replknet_xl')``;
    ``features_only=True`` wraps it in timm's feature getter (4 stage maps, strides 4-32).
    Follows timm's model contract: ``forward_features`` is the raw last-stage map,
    ``forward_head(x, pre_logits)`` applies the final ``norm``, the pooling and the ``head``;
    ``num_classes=0`` makes ``head`` an identity and ``global_pool=''`` keeps the map unpooled, at
    creation or through ``reset_classifier``. Scriptable with ``torch.jit.script`` and traceable with
    timm's FX helpers.

    Args:
        arch: As for :class:`RepLKNet`.
        num_classes: Classes of the Linear head; 0 for none (features). Defaults to 1000.
        in_chans: Input channels. Defaults to 3.
        global_pool: ``'avg'`` or ``''`` (no pooling). Defaults to ``'avg'``.
        drop_path_rate: Stochastic depth. Defaults to 0.
        **kwargs: Further :class:`RepLKNet` arguments (``deploy``, ``fuse_bn``, ``lk_impl``, ...).
    """

    def __init__(self, arch: Union[str, dict] = '31B', num_classes: int = 1000,
                 in_chans: int = 3, global_pool: str = 'avg', drop_path_rate: float = 0.0,
                 **kwargs) -> None:
        self.check_global_pool('RepLKNet', global_pool, num_classes)
        kwargs.setdefault('out_indices', ())
        super().__init__(arch=arch, in_channels=in_chans, num_classes=max(num_classes, 1),
                         drop_path_rate=drop_path_rate, **kwargs)
        self._init_timm_classifier(num_classes, global_pool, self.arch['channels'])
        if num_classes == 0 and self.deploy and self.fuse_bn:
            # No Linear head to absorb the final norm, so the fused form keeps it.
            self.norm = build_norm_layer(self.norm_cfg, self.arch['channels'][-1])[1]

    def _timm_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        return self.stages[index](self.transitions[index - 1](x) if index > 0 else x)

    def _timm_stage_feature(self, index: int, x: torch.Tensor) -> torch.Tensor:
        return self.stages[index].norm(x)

    def _timm_final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)

    def _timm_block_groups(self, coarse: bool):
        # transition i (1x1 conv + stride-2 dw conv) opens stage i + 1, as a downsample does
        if coarse:
            return [(r'^stages\.(\d+)', None), (r'^transitions\.(\d+)', (99999, ))]
        return [(r'^stages\.(\d+)\.blocks\.(\d+)', None), (r'^stages\.(\d+)\.norm', (99999, )),
                (r'^transitions\.(\d+)', (99999, ))]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """The raw last-stage map (timm convention; the final ``norm`` belongs to the head)."""
        x = self.forward_stem(x)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            # transitions[i] follows stage i; a ModuleList cannot be indexed by a loop variable
            # under TorchScript, so the (three-entry) list is walked instead.
            for j, transition in enumerate(self.transitions):
                if j == i:
                    x = transition(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``head(pool(norm(x)))`` on the raw last-stage map; ``pre_logits`` stops before ``head``."""
        x = self.norm(x)
        if self.global_pool == 'avg':
            x = x.mean(dim=(2, 3))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.forward_head(self.forward_features(x))


# ---------------------------------------------------------------------- timm factories
try:  # timm is optional: register timm model names only when it is installed
    from timm.models import generate_default_cfgs
except ImportError:
    generate_default_cfgs = None

if generate_default_cfgs is not None:

    def _timm_cfg(**kwargs) -> dict:
        return {
            'url': '', 'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
            'crop_pct': 0.875, 'interpolation': 'bicubic',
            'mean': (0.485, 0.456, 0.406), 'std': (0.229, 0.224, 0.225),
            'first_conv': 'stem.0.conv', 'classifier': 'head', 'license': 'mit',
            'paper_ids': 'arXiv:2203.06717',
            'paper_name': 'Scaling Up Your Kernels to 31x31: Revisiting Large Kernel Design in CNNs',
            'origin_url': 'https://github.com/DingXiaoH/RepLKNet-pytorch', **kwargs}

    # timm resolves no weights itself (no url): pretrained=True goes through mmlk's checkpoint registry
    # (checkpoints.yaml names, sha256-verified downloads, strict loading).
    default_cfgs = generate_default_cfgs({
        'replknet_31b.in1k': _timm_cfg(),
        'replknet_31b.in1k_384': _timm_cfg(input_size=(3, 384, 384), pool_size=(12, 12),
                                           crop_pct=1.0),
        'replknet_31b.in22k_ft_in1k': _timm_cfg(),
        'replknet_31b.in22k_ft_in1k_384': _timm_cfg(input_size=(3, 384, 384),
                                                    pool_size=(12, 12), crop_pct=1.0),
        'replknet_31b.in22k': _timm_cfg(num_classes=21841),
        'replknet_31l.in22k_ft_in1k_384': _timm_cfg(input_size=(3, 384, 384),
                                                    pool_size=(12, 12), crop_pct=1.0),
        'replknet_31l.in22k': _timm_cfg(num_classes=21841),
        'replknet_xl.meg73m_ft_in1k_320': _timm_cfg(input_size=(3, 320, 320), pool_size=(10, 10),
                                                    crop_pct=1.0, mean=(0.5, 0.5, 0.5),
                                                    std=(0.5, 0.5, 0.5)),
    })

    def _create_timm(variant: str, pretrained: bool, **kwargs) -> nn.Module:
        # features_only: the getter (forward_intermediates), since stages and transitions interleave;
        # the arch is the name's suffix in arch_settings' spelling (replknet_31b -> '31B')
        return build_timm_model(TimmRepLKNet, variant, pretrained, family='replknet',
                                arch=variant.split('_', 1)[1].upper(), **kwargs)

    for _name, _doc in (('replknet_31b', 'RepLKNet-31B (kernels 31/29/27/13, channels 128-1024).'),
                        ('replknet_31l', 'RepLKNet-31L (kernels 31/29/27/13, channels 192-1536).'),
                        ('replknet_xl', 'RepLKNet-XL (kernels 27/27/27/13, channels 256-2048, dw_ratio 1.5, '
                                        'no small kernel).')):
        register_timm_factory(globals(), _name, _doc, _create_timm)
