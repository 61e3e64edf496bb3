"""UniRepLKNet for timm: ``timm.create_model('unireplknet_a' ... 'unireplknet_xl')`` after ``import mmlk``.

Upstream registers its timm names only when its own file is imported (UniRepLKNet issue #9, "Unknown model");
here ``import mmlk`` registers them. ``pretrained=True`` resolves the weights through mmlk's
``checkpoints.yaml`` (Hugging Face Hub downloads, strict loading); the timm-tag -> checkpoint-name map is read from
``checkpoints.yaml`` itself (the ``timm`` field of each classifier entry), so it cannot drift from the registry.
"""
from typing import Dict, Union

import torch
import torch.nn as nn

from ..timm_adapter import TimmAdapter, build_timm_model, register_timm_factory
from .model import UniRepLKNet

__all__ = ['TimmUniRepLKNet']


class TimmUniRepLKNet(TimmAdapter, UniRepLKNet):
    """timm-facing UniRepLKNet classifier: ``forward`` returns logits; the keys are the official classifier's.

    timm's model contract: ``forward_features`` is the raw last-stage map, ``forward_head(x, pre_logits)``
    pools, applies the official LayerNorm ``norm`` and the ``head``; ``num_classes=0`` makes ``head`` an
    identity and ``global_pool=''`` keeps the map (then ``norm`` normalises each position's channels).
    ``features_only=True`` returns the four raw stage maps (strides 4-32). Scriptable and FX-traceable.

    Args:
        arch: As for :class:`~mmlk.models.UniRepLKNet`. Defaults to ``'t'``.
        num_classes: Classes of the head; 0 for none. Defaults to 1000.
        in_chans: Input channels. Defaults to 3.
        global_pool: ``'avg'`` or ``''``. Defaults to ``'avg'``.
        drop_path_rate: Stochastic depth. Defaults to 0.
        **kwargs: Further :class:`~mmlk.models.UniRepLKNet` arguments (``deploy``, ``lk_impl``, ``layer_scale_init_value``).
    """

    def __init__(self, arch: Union[str, dict] = 't', num_classes: int = 1000, in_chans: int = 3,
                 global_pool: str = 'avg', drop_path_rate: float = 0.0, **kwargs) -> None:
        self.check_global_pool('UniRepLKNet', global_pool, num_classes)
        kwargs.setdefault('out_indices', ())
        super().__init__(arch=arch, in_channels=in_chans, num_classes=max(num_classes, 1),
                         drop_path_rate=drop_path_rate, **kwargs)
        self._init_timm_classifier(num_classes, global_pool, self.arch['dims'])

    def group_matcher(self, coarse: bool = False) -> Dict[str, object]:
        """Parameter groups for timm's layer decay: the stem, then stage by stage (a downsample opens its stage)."""
        if coarse:
            blocks = [(r'^stages\.(\d+)', None), (r'^downsample_layers\.([1-3])', None), (r'^norm\.', (99999, ))]
        else:
            blocks = [(r'^downsample_layers\.([1-3])', (0, )), (r'^stages\.(\d+)\.(\d+)', None),
                      (r'^norm\.', (99999, ))]
        return dict(stem=r'^downsample_layers\.0\.', blocks=blocks)

    def _timm_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        return self.stages[index](self.downsample_layers[index](x) if index > 0 else x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """The raw last-stage map (the classifier's norm comes after pooling, in the head)."""
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``head(norm(pool(x)))``; unpooled (``global_pool=''``) the norm runs over each position's channels."""
        if self.global_pool == 'avg':
            x = self.norm(x.mean(dim=(2, 3)))
        else:
            x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.forward_head(self.forward_features(x))


try:
    from timm.models import generate_default_cfgs
except ImportError:  # timm is optional
    generate_default_cfgs = None

if generate_default_cfgs is not None:

    def _cfg(**kwargs) -> dict:
        return {'url': '', 'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7), 'crop_pct': 0.875,
                'interpolation': 'bicubic', 'mean': (0.485, 0.456, 0.406), 'std': (0.229, 0.224, 0.225),
                'first_conv': 'downsample_layers.0.0', 'classifier': 'head', 'license': 'apache-2.0',
                'paper_ids': 'arXiv:2311.15599',
                'paper_name': 'UniRepLKNet: A Universal Perception Large-Kernel ConvNet for Audio, Video, Point '
                              'Cloud, Time-Series and Image Recognition',
                'origin_url': 'https://github.com/AILab-CVC/UniRepLKNet', **kwargs}

    _384 = dict(input_size=(3, 384, 384), pool_size=(12, 12), crop_pct=1.0)
    _IN22K = dict(num_classes=21841)
    # The released classifiers (the official README): ImageNet-1k at 224 for A..S, ImageNet-22k pretraining
    # for S..XL (L and XL at 192) and their 22k -> 1k fine-tunes at 384.
    default_cfgs = generate_default_cfgs({
        **{f'unireplknet_{v}.in1k': _cfg() for v in ('a', 'f', 'p', 'n', 't', 's')},
        'unireplknet_s.in22k': _cfg(**_IN22K),
        'unireplknet_b.in22k': _cfg(**_IN22K),
        'unireplknet_l.in22k': _cfg(**_IN22K, input_size=(3, 192, 192), pool_size=(6, 6)),
        'unireplknet_xl.in22k': _cfg(**_IN22K, input_size=(3, 192, 192), pool_size=(6, 6)),
        **{f'unireplknet_{v}.in22k_ft_in1k_384': _cfg(**_384) for v in ('s', 'b', 'l', 'xl')},
    })

    def _create(variant: str, pretrained: bool, **kwargs) -> nn.Module:
        return build_timm_model(TimmUniRepLKNet, variant, pretrained, family='unireplknet',
                                arch=variant.split('_')[1], **kwargs)

    for _variant, _text in (('a', 'dims 40-320, depths 2-2-6-2'), ('f', 'dims 48-384, depths 2-2-6-2'),
                            ('p', 'dims 64-512, depths 2-2-6-2'), ('n', 'dims 80-640, depths 2-2-8-2'),
                            ('t', 'dims 80-640, depths 3-3-18-3'), ('s', 'dims 96-768, depths 3-3-27-3'),
                            ('b', 'dims 128-1024, depths 3-3-27-3'), ('l', 'dims 192-1536, depths 3-3-27-3'),
                            ('xl', 'dims 256-2048, depths 3-3-27-3')):
        register_timm_factory(globals(), f'unireplknet_{_variant}', f'UniRepLKNet-{_variant.upper()} ({_text}).',
                              _create)
