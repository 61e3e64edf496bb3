"""RepNeXt for timm: ``timm.create_model('repnext_m0' ... 'repnext_m5', 'repnext_m0e' ...)`` after ``import mmlk``.

The timm adapter of :class:`~mmlk.models.repnext.model.RepNeXt` (the backbone plus upstream's two-head
classifier), in its own module as in every family package, so ``model.py`` holds the layers and the mm backbone
only.
"""
from typing import Dict, Optional, Union

import torch
import torch.nn as nn

from ..timm_adapter import TimmAdapter, build_timm_model, register_timm_factory
from .head import RepNeXtClsHead
from .model import RepDWConvM, RepDWConvS, RepNeXt


class TimmRepNeXt(TimmAdapter, RepNeXt):
    """Full RepNeXt classifier for timm: the backbone plus upstream's two-head classifier.

    State-dict keys equal the released classification checkpoints (``head.head.*``, ``head.head_dist.*``).
    In training with ``distillation=True`` the forward returns ``(head, head_dist)`` logits as upstream's
    DeiT-style training expects; otherwise, and always in eval, their mean.

    Args:
        arch: As for :class:`RepNeXt`.
        num_classes: Classes of both heads; 0 gives no head (pooled features). Defaults to 1000.
        in_chans: Input channels. Defaults to 3.
        global_pool: ``'avg'`` or ``''`` (no pooling). Defaults to ``'avg'``.
        drop_rate: Dropout before the heads. Defaults to 0.
        distillation: Return both heads' logits in training mode. Defaults to False.
        **kwargs: Further :class:`RepNeXt` arguments (``deploy``, ``fold_block_norm``, ``merge_branches``,
            ``drop_path_rate``, ``with_cp``, ``lk_impl``, ...).
    """


    def __init__(self, arch: Union[str, Dict] = 'm3', num_classes: int = 1000, in_chans: int = 3,
                 global_pool: str = 'avg', drop_rate: float = 0., distillation: bool = False,
                 **kwargs) -> None:
        if global_pool not in ('avg', ''):
            raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
        super().__init__(arch=arch, in_channels=in_chans, out_indices=(-1, ), **kwargs)
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.num_features = self.head_hidden_size = self.embed_dims[-1]
        self.feature_info = [dict(num_chs=c, reduction=4 * 2 ** i, module=f'stages.{i}')
                             for i, c in enumerate(self.embed_dims)]
        self.head_drop = nn.Dropout(drop_rate)
        self.distillation = distillation
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        return RepNeXtClsHead(num_classes, self.num_features, distillation=self.distillation,
                              deploy=self.deploy)

    def _timm_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        return self.stages[index](x)

    def _timm_block_groups(self, coarse: bool):
        if coarse:
            return r'^stages\.(\d+)'
        return [(r'^stages\.(\d+)\.downsample', (0, )), (r'^stages\.(\d+)\.blocks\.(\d+)', None)]

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        self.head = self._make_head(num_classes)

    def set_distilled_training(self, enable: bool = True) -> None:
        self.distillation = enable
        if isinstance(self.head, RepNeXtClsHead):
            self.head.distillation = enable

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.forward_stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == 'avg':
            x = x.mean((2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def _switch_to_deploy(self, single_branch: bool) -> None:
        super()._switch_to_deploy(single_branch)
        if isinstance(self.head, RepNeXtClsHead):
            self.head.switch_to_deploy()


try:  # timm is optional: register timm model names only when it is installed
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    from timm.models import generate_default_cfgs
    from timm.layers import register_notrace_module
except ImportError:  # pragma: no cover - exercised only without timm
    generate_default_cfgs = None

if generate_default_cfgs is not None:
    # timm's FX helpers (feature extraction, its FX tests) keep the branch groups as leaf calls: their
    # forward builds the merged kernel and picks the conv route from its shape, which symbolic tracing
    # cannot follow. The leaves still run eagerly inside the graph, so gradients reach every branch.
    register_notrace_module(RepDWConvS)
    register_notrace_module(RepDWConvM)

if generate_default_cfgs is not None:
    # timm's register_model reads the module attribute ``default_cfgs`` for pretrained configs. timm
    # resolves no weights itself (no url): pretrained=True goes through mmlk's checkpoint registry
    # (checkpoints.yaml names, verified downloads, strict loading).
    _TIMM_CFG = dict(
        url='', num_classes=1000, input_size=(3, 224, 224), pool_size=(7, 7), crop_pct=0.95,
        interpolation='bicubic', mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
        first_conv='stem.stem.0.conv', classifier=('head.head.linear', 'head.head_dist.linear'),
        license='apache-2.0', paper_ids='arXiv:2406.16004', origin_url='https://github.com/suous/RepNeXt')
    # Tags: the RepViT-recipe distilled release (first, the default), then the StarNet-recipe ``*.pth.tar``
    # releases (evaluated at crop 0.9); which checkpoint each loads is the `timm` field of checkpoints.yaml.
    _STARNET_ARCHS = ('m0', 'm1', 'm2')
    _cfgs = {}
    for _name, _arch in RepNeXt.arch_settings.items():
        if _arch.get('token_mixer') == 'single':
            _cfgs[f'repnext_{_name}'] = dict(_TIMM_CFG)  # the "E" forms: no released weights
            continue
        _cfgs[f'repnext_{_name}.dist_in1k'] = dict(_TIMM_CFG)
        if _name in _STARNET_ARCHS:
            _cfgs[f'repnext_{_name}.starnet_in1k'] = dict(_TIMM_CFG, crop_pct=0.9)
            _cfgs[f'repnext_{_name}.starnet_dist_in1k'] = dict(_TIMM_CFG, crop_pct=0.9)
    default_cfgs = generate_default_cfgs(_cfgs)
    del _name, _arch, _cfgs

    def _create_repnext(variant: str, pretrained: bool = False, **kwargs) -> nn.Module:
        arch = variant.split('_')[-1]
        if pretrained and RepNeXt.arch_settings[arch].get('token_mixer') == 'single':
            raise ValueError(f'{variant}: upstream released no weights of the single-branch "E" variants '
                             '(only training logs); create it with pretrained=False')
        # features_only: stem, then one module per stage (``stages`` flattened), each output a feature map
        return build_timm_model(TimmRepNeXt, variant, pretrained, family='repnext', arch=arch, feature_cls='list',
                                default_tag='dist_in1k', **kwargs)

    for _name, _doc in (
        ('repnext_m0', 'RepNeXt-M0 classifier (2.72M parameters train-time).'),
        ('repnext_m1', 'RepNeXt-M1 classifier (5.32M parameters train-time).'),
        ('repnext_m2', 'RepNeXt-M2 classifier (7.05M parameters train-time).'),
        ('repnext_m3', 'RepNeXt-M3 classifier (8.47M parameters train-time).'),
        ('repnext_m4', 'RepNeXt-M4 classifier (14.08M parameters train-time).'),
        ('repnext_m5', 'RepNeXt-M5 classifier (22.71M parameters train-time).'),
        ('repnext_m0e', 'RepNeXt-M0E classifier: the single-branch equivalent form of M0, trained as such.'),
        ('repnext_m1e', 'RepNeXt-M1E classifier: the single-branch equivalent form of M1, trained as such.'),
        ('repnext_m2e', 'RepNeXt-M2E classifier: the single-branch equivalent form of M2, trained as such.')):
        register_timm_factory(globals(), _name, _doc, _create_repnext)
