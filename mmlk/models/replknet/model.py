"""RepLKNet: large depthwise kernels with small-kernel re-parameterisation.

Ding et al., "Scaling Up Your Kernels to 31x31: Revisiting Large Kernel Design in CNNs", CVPR 2022
(arXiv:2203.06717). One implementation serves mmpretrain, mmseg, mmdet (through the ``mmlk`` registry
scope) and timm (factories ``replknet_31b``, ``replknet_31l``, ``replknet_xl``).

Module names reproduce the official checkpoints' key layout exactly (``stem.N.conv/bn``,
``stages.i.blocks.j`` with RepLKBlock / ConvFFN interleaved, ``large_kernel.lkb_origin`` +
``small_conv`` or the merged ``lkb_reparam``, ``transitions.i.{0,1}``, ``stages.i.norm``, classifier
``norm`` + ``head``), so official files load with no renaming.
"""
import copy
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath

from mmlk.registry import MODELS, register_plain_alias
from ..utils.conv import conv_like, make_conv
from ..utils.reparam import fold_bn_into_next, fuse_conv_bn, pad_kernel, require_batchnorm
from ..base import RepBackbone, checkpoint_with_bn_guard
from .keys import RepLKNetKeys

__all__ = ['RepLKNet', 'RepLKBlock', 'ConvFFN', 'ReparamLargeKernelConv', 'ConvBN']

_ARCH_FIELDS = ('large_kernel_sizes', 'layers', 'channels', 'small_kernel', 'dw_ratio', 'ffn_ratio')


class ConvBN(nn.Module):
    """Bias-free conv followed by a norm layer and optionally ReLU (official ``conv_bn[_relu]``).

    Children are named ``conv`` and ``bn`` (whatever the norm type) so keys match the official
    checkpoints. After :meth:`switch_to_deploy` with ``fuse_bn=True`` (or when built with ``fused=True``) ``conv`` carries a bias and
    ``bn`` is an ``nn.Identity``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square, odd kernel size; padding is ``kernel_size // 2``.
        stride: Convolution stride.
        groups: Convolution groups (``in_channels`` for depthwise).
        norm_cfg: mmcv norm config.
        relu: Whether a ReLU follows the norm.
        fused: Build the folded form (biased conv, no norm) directly.
        lk_impl: Implementation of large depthwise kernels, see :class:`mmlk.ops.LargeKernelDWConv2d`.
    """

    deploy_options = ('fuse_bn', )

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, norm_cfg: Optional[dict] = None, relu: bool = False,
                 fused: bool = False, lk_impl: str = 'auto') -> None:
        super().__init__()
        self.conv = make_conv(in_channels, out_channels, kernel_size, stride, groups=groups, bias=fused,
                              lk_impl=lk_impl)
        if fused:
            self.bn = nn.Identity()
        else:
            self.bn = build_norm_layer(norm_cfg or dict(type='BN'), out_channels)[1]
        # A parameter-free child, so it never appears in the state dict.
        self.nonlinear = nn.ReLU() if relu else nn.Identity()

    @property
    def is_fused(self) -> bool:
        return isinstance(self.bn, nn.Identity)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.bn(self.conv(x)))

    def equivalent_kernel_bias(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Kernel and bias of a single conv equivalent to ``bn(conv(x))`` in eval mode."""
        if self.is_fused:
            return self.conv.weight, self.conv.bias
        return fuse_conv_bn(self.conv.weight, self.conv.bias, require_batchnorm(self.bn, 'a conv-norm pair'))

    def switch_to_deploy(self, fuse_bn: bool = False) -> None:
        """With ``fuse_bn``, fold the norm into a biased conv in place (idempotent).

        A conv-norm pair is already in RepLKNet's merged form (as in the official deploy checkpoints);
        folding the norm is the further, optional "fused" form, as at every level of RepLKNet.
        """
        if self.is_fused or not fuse_bn:
            return
        weight, bias = self.equivalent_kernel_bias()
        self.conv = conv_like(self.conv, weight.detach(), bias.detach())
        self.bn = nn.Identity()


class ReparamLargeKernelConv(nn.Module):
    """Depthwise large-kernel conv-BN with a parallel small-kernel conv-BN, mergeable into one conv.

    Training form: ``lkb_origin`` (KxK) + ``small_conv`` (kxk), outputs summed. Merged form: one biased
    depthwise KxK conv ``lkb_reparam`` with real padding ``K // 2``.

    Args:
        channels: Number of channels (the conv is depthwise).
        kernel_size: Large kernel size K (odd).
        small_kernel: Small kernel size k (odd, <= K), or None for no parallel branch (RepLKNet-XL).
        norm_cfg: mmcv norm config.
        deploy: Build the merged form directly.
        lk_impl: Implementation of the large depthwise conv (``'auto'`` or ``'torch'``).
    """

    def __init__(self, channels: int, kernel_size: int, small_kernel: Optional[int],
                 norm_cfg: Optional[dict] = None, deploy: bool = False,
                 lk_impl: str = 'auto') -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f'large kernel size must be odd, got {kernel_size}')
        if small_kernel is not None and (small_kernel % 2 == 0 or small_kernel > kernel_size):
            raise ValueError(f'small_kernel must be odd and <= the large kernel ({kernel_size}), '
                             f'got {small_kernel}')
        self.channels = channels
        self.kernel_size = kernel_size
        self.small_kernel = small_kernel
        if deploy:
            self.lkb_reparam = make_conv(channels, channels, kernel_size, groups=channels, lk_impl=lk_impl)
        else:
            self.lkb_origin = ConvBN(channels, channels, kernel_size, groups=channels,
                                     norm_cfg=norm_cfg, lk_impl=lk_impl)
            if small_kernel is not None:
                self.small_conv = ConvBN(channels, channels, small_kernel, groups=channels,
                                         norm_cfg=norm_cfg, lk_impl=lk_impl)

    @property
    def is_merged(self) -> bool:
        return hasattr(self, 'lkb_reparam')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # hasattr (not the is_merged property) in an if/else: TorchScript resolves it statically and
        # never compiles the branch naming the absent modules.
        if hasattr(self, 'lkb_reparam'):
            out = self.lkb_reparam(x)
        else:
            out = self.lkb_origin(x)
            if hasattr(self, 'small_conv'):
                out = out + self.small_conv(x)
        return out

    def equivalent_kernel_bias(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Kernel and bias of the single KxK conv equal to the two branches in eval mode."""
        if self.is_merged:
            return self.lkb_reparam.weight, self.lkb_reparam.bias
        weight, bias = self.lkb_origin.equivalent_kernel_bias()
        if hasattr(self, 'small_conv'):
            small_w, small_b = self.small_conv.equivalent_kernel_bias()
            weight = weight + pad_kernel(small_w, (self.kernel_size, self.kernel_size))
            bias = bias + small_b
        return weight, bias

    def switch_to_deploy(self) -> None:
        """Merge both branches into ``lkb_reparam`` in place (idempotent)."""
        if self.is_merged:
            return
        weight, bias = self.equivalent_kernel_bias()
        self.lkb_reparam = conv_like(self.lkb_origin.conv, weight.detach(), bias.detach())
        del self.lkb_origin
        if hasattr(self, 'small_conv'):
            del self.small_conv


def _fuse_pre_norm_block(block: nn.Module, pre_norm: str) -> None:
    """Fold every norm of a ``pw2(act(... pw1(pre_norm(x))))`` block: ``pw1`` / ``pw2`` into biased convs, then
    the eval-mode ``pre_norm`` into ``pw1`` (exact: a 1x1 conv never sees zero padding)."""
    block.pw1.switch_to_deploy(fuse_bn=True)
    block.pw2.switch_to_deploy(fuse_bn=True)
    norm = getattr(block, pre_norm)
    if isinstance(norm, nn.Identity):
        return
    conv = block.pw1.conv
    weight, bias = fold_bn_into_next(conv.weight, conv.bias, require_batchnorm(norm, pre_norm))
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
    setattr(block, pre_norm, nn.Identity())


class RepLKBlock(nn.Module):
    """``x + drop_path(pw2(relu(large_kernel(pw1(prelkb_bn(x))))))`` (RepLKNet Fig. 4).

    Args:
        in_channels: Block width C.
        dw_channels: Width of the depthwise large-kernel conv (``C * dw_ratio``).
        kernel_size: Large kernel size.
        small_kernel: Parallel small kernel size, or None.
        drop_path: Stochastic-depth rate of the residual branch.
        norm_cfg: mmcv norm config.
        deploy: Build the large kernel in merged form.
        fused: Build every conv-norm pair folded (implies ``deploy``).
        lk_impl: Implementation of the large depthwise conv.
    """

    deploy_options = ('fuse_bn', )

    def __init__(self, in_channels: int, dw_channels: int, kernel_size: int,
                 small_kernel: Optional[int], drop_path: float = 0.0,
                 norm_cfg: Optional[dict] = None, deploy: bool = False, fused: bool = False,
                 lk_impl: str = 'auto') -> None:
        super().__init__()
        norm_cfg = norm_cfg or dict(type='BN')
        self.prelkb_bn = nn.Identity() if fused else build_norm_layer(norm_cfg, in_channels)[1]
        self.pw1 = ConvBN(in_channels, dw_channels, 1, norm_cfg=norm_cfg, relu=True, fused=fused)
        self.large_kernel = ReparamLargeKernelConv(dw_channels, kernel_size, small_kernel, norm_cfg,
                                                   deploy=deploy or fused, lk_impl=lk_impl)
        self.lk_nonlinear = nn.ReLU()
        self.pw2 = ConvBN(dw_channels, in_channels, 1, norm_cfg=norm_cfg, fused=fused)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pw1(self.prelkb_bn(x))
        out = self.pw2(self.lk_nonlinear(self.large_kernel(out)))
        return x + self.drop_path(out)

    def switch_to_deploy(self, fuse_bn: bool = False) -> None:
        """Merge the large-kernel branches; with ``fuse_bn`` also fold every norm into a conv."""
        self.large_kernel.switch_to_deploy()
        if fuse_bn:
            _fuse_pre_norm_block(self, 'prelkb_bn')


class ConvFFN(nn.Module):
    """``x + drop_path(pw2(gelu(pw1(preffn_bn(x)))))``: the 1x1 feed-forward block of RepLKNet.

    Args:
        in_channels: Block width C.
        hidden_channels: Hidden width (``C * ffn_ratio``).
        drop_path: Stochastic-depth rate of the residual branch.
        norm_cfg: mmcv norm config.
        fused: Build every conv-norm pair folded.
    """

    deploy_options = ('fuse_bn', )

    def __init__(self, in_channels: int, hidden_channels: int, drop_path: float = 0.0,
                 norm_cfg: Optional[dict] = None, fused: bool = False) -> None:
        super().__init__()
        norm_cfg = norm_cfg or dict(type='BN')
        self.preffn_bn = nn.Identity() if fused else build_norm_layer(norm_cfg, in_channels)[1]
        self.pw1 = ConvBN(in_channels, hidden_channels, 1, norm_cfg=norm_cfg, fused=fused)
        self.nonlinear = nn.GELU()
        self.pw2 = ConvBN(hidden_channels, in_channels, 1, norm_cfg=norm_cfg, fused=fused)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pw2(self.nonlinear(self.pw1(self.preffn_bn(x))))
        return x + self.drop_path(out)

    def switch_to_deploy(self, fuse_bn: bool = False) -> None:
        """Nothing to merge structurally; with ``fuse_bn`` fold every norm into a conv."""
        if fuse_bn:
            _fuse_pre_norm_block(self, 'preffn_bn')


class RepLKNetStage(nn.Module):
    """``layers`` pairs of (RepLKBlock, ConvFFN) stored interleaved in one ``blocks`` list.

    ``norm`` is a norm layer on the stage's *returned* feature when ``norm_intermediate_features``
    is on (the main path never goes through it), otherwise an identity.
    """

    def __init__(self, channels: int, num_blocks: int, kernel_size: int,
                 small_kernel: Optional[int], dw_ratio: float, ffn_ratio: float,
                 drop_path: Sequence[float], norm_cfg: dict, norm_intermediate_features: bool,
                 deploy: bool, fused: bool, lk_impl: str) -> None:
        super().__init__()
        self.with_cp = False
        blocks = []
        for i in range(num_blocks):
            blocks.append(RepLKBlock(channels, int(channels * dw_ratio), kernel_size, small_kernel,
                                     drop_path[i], norm_cfg, deploy, fused, lk_impl))
            blocks.append(ConvFFN(channels, int(channels * ffn_ratio), drop_path[i], norm_cfg,
                                  fused))
        self.blocks = nn.ModuleList(blocks)
        if norm_intermediate_features:
            self.norm = build_norm_layer(norm_cfg, channels)[1]
        else:
            self.norm = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            # (checkpointing is eager-only; TorchScript drops this branch at compile time)
            if not torch.jit.is_scripting() and self.with_cp and torch.is_grad_enabled():
                x = checkpoint_with_bn_guard(blk, x, blk)
            else:
                x = blk(x)
        return x


def _validate_arch(arch: Union[str, dict], choices: Dict[str, dict]) -> dict:
    if isinstance(arch, str):
        key = arch.upper()
        if key not in choices:
            raise ValueError(f'unknown RepLKNet arch {arch!r}; choose one of {sorted(choices)} '
                             f'or pass a dict with the fields {list(_ARCH_FIELDS)}')
        return copy.deepcopy(choices[key])
    if not isinstance(arch, dict):
        raise TypeError(f'arch must be a str or a dict, got {type(arch).__name__}')
    missing = [f for f in _ARCH_FIELDS if f not in arch]
    extra = [f for f in arch if f not in _ARCH_FIELDS]
    if missing or extra:
        raise ValueError(f'RepLKNet arch dict must have exactly the fields {list(_ARCH_FIELDS)}; '
                         f'missing {missing}, unknown {extra}')
    cfg = copy.deepcopy(dict(arch))
    for field in ('large_kernel_sizes', 'layers', 'channels'):
        value = cfg[field]
        if (not isinstance(value, (list, tuple)) or len(value) != 4
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                           for v in value)):
            raise ValueError(f'RepLKNet arch field {field!r} must be 4 positive ints (one per '
                             f'stage), got {value!r}')
        cfg[field] = list(value)
    for k in cfg['large_kernel_sizes']:
        if k % 2 == 0:
            raise ValueError(f'RepLKNet arch field \'large_kernel_sizes\' must be odd, got '
                             f'{cfg["large_kernel_sizes"]}')
    sk = cfg['small_kernel']
    if sk is not None and (not isinstance(sk, int) or isinstance(sk, bool) or sk <= 0 or sk % 2 == 0
                           or sk > min(cfg['large_kernel_sizes'])):
        raise ValueError('RepLKNet arch field \'small_kernel\' must be None or an odd int no larger '
                         f'than every large kernel, got {sk!r}')
    for field in ('dw_ratio', 'ffn_ratio'):
        value = cfg[field]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ValueError(f'RepLKNet arch field {field!r} must be a positive number, '
                             f'got {value!r}')
    return cfg


@MODELS.register_module()
@register_plain_alias
class RepLKNet(RepLKNetKeys, RepBackbone):
    """RepLKNet backbone (Ding et al., "Scaling Up Your Kernels to 31x31", CVPR 2022).

    A 4-conv stem (stride 4), four stages of (RepLKBlock, ConvFFN) pairs separated by transitions
    (1x1 conv then stride-2 depthwise 3x3), optionally followed by the official classifier (``norm``
    BN, global average pooling, ``head`` Linear).

    Forward returns a tuple with the feature maps of ``out_indices`` (strides 4, 8, 16, 32). With
    ``num_classes > 0`` the logits are appended as the last element, so mmpretrain's ``ClsHead``
    (which reads ``feats[-1]``) consumes them and the official flat checkpoints (``norm.*``,
    ``head.*``) load into the backbone unchanged. A strict ``load_state_dict`` of weights that do not
    fit names both variants/forms (see :func:`mmlk.models.weights.check_state_dict_fits`).

    Args:
        arch: ``'31B'``, ``'31L'``, ``'XL'`` or a dict with the fields ``large_kernel_sizes``,
            ``layers``, ``channels`` (4 ints each), ``small_kernel`` (odd int or None), ``dw_ratio``
            and ``ffn_ratio``. Defaults to ``'31B'``.
        in_channels: Input image channels. Defaults to 3.
        out_indices: Stages whose outputs are returned (0-3; negative counts from the end). May be
            empty only with a classifier. Defaults to ``(0, 1, 2, 3)``.
        num_classes: Build the official classifier (``norm`` + ``head``) with this many classes
            (1000 for ImageNet-1k, 21841 for ImageNet-22k checkpoints); 0 for a pure backbone.
            Defaults to 0.
        drop_path_rate: Maximum stochastic-depth rate; block pair ``i`` uses
            ``linspace(0, drop_path_rate, sum(layers))[i]``. Defaults to 0.
        frozen_stages: -1 freezes nothing, 0 the stem, ``k >= 1`` the stem, stages ``0..k-1`` and the
            transitions between them (eval mode and ``requires_grad=False``, re-applied by
            ``train()``). Defaults to -1.
        norm_eval: Keep every BatchNorm in eval mode during training. Defaults to False.
        with_cp: Gradient checkpointing per block (``use_reentrant=False``); BN running statistics
            are updated once per step, as without checkpointing. Defaults to False.
        norm_cfg: mmcv norm config used for every norm layer (BN, SyncBN, GN, ...).
            Defaults to ``dict(type='BN')``.
        norm_intermediate_features: Add a norm ``stages.i.norm`` on each returned stage output (the
            XL downstream models use it). Defaults to False.
        deploy: Build the merged form (``lkb_reparam``) directly, e.g. to load merged weights.
            Defaults to False.
        small_kernel_merged: Alias of ``deploy`` (the official name). Defaults to None.
        fuse_bn: Make the deploy form also fold every conv-norm pair (and the pre-block BNs and the
            classifier norm) into biased convs / the head. With ``deploy=True`` it builds that form
            directly; otherwise it is what :meth:`switch_to_deploy` does by default.
            Defaults to False.
        lk_impl: Implementation of depthwise kernels >= 7, passed to
            :class:`mmlk.ops.LargeKernelDWConv2d` (``'auto'``, ``'torch'`` for plain ``F.conv2d``,
            or a specific route of that op). Defaults to ``'auto'``.
        init_cfg: mmengine init config; ``dict(type='Pretrained', checkpoint=..., prefix=...)`` goes
            through :func:`mmlk.models.weights.load_pretrained`. Defaults to None.
    """

    arch_settings: Dict[str, dict] = {
        '31B': dict(large_kernel_sizes=[31, 29, 27, 13], layers=[2, 2, 18, 2],
                    channels=[128, 256, 512, 1024], small_kernel=5, dw_ratio=1, ffn_ratio=4),
        '31L': dict(large_kernel_sizes=[31, 29, 27, 13], layers=[2, 2, 18, 2],
                    channels=[192, 384, 768, 1536], small_kernel=5, dw_ratio=1, ffn_ratio=4),
        'XL': dict(large_kernel_sizes=[27, 27, 27, 13], layers=[2, 2, 18, 2],
                   channels=[256, 512, 1024, 2048], small_kernel=None, dw_ratio=1.5, ffn_ratio=4),
    }
    family = 'replknet'
    display_name = 'RepLKNet'
    #: the release formats of this family (``format`` in checkpoints.yaml; see mmlk.models.weights.keys)
    formats = {'replknet-official': 'RepLKNet-pytorch release: flat state dict, or under "model" / "state_dict"'}
    # mmpretrain's port keeps the final BN in the last stage; pairs are (official prefix, mmpretrain prefix).
    mmpretrain_renames = (('norm.', 'stages.3.norm.'), )
    num_stages = 4
    deploy_options = ('fuse_bn', )

    def __init__(self,
                 arch: Union[str, dict] = '31B',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 num_classes: int = 0,
                 drop_path_rate: float = 0.0,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 norm_cfg: Optional[dict] = None,
                 norm_intermediate_features: bool = False,
                 deploy: bool = False,
                 small_kernel_merged: Optional[bool] = None,
                 fuse_bn: bool = False,
                 lk_impl: str = 'auto',
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if small_kernel_merged is not None:
            if deploy and not small_kernel_merged:
                raise ValueError('deploy=True contradicts small_kernel_merged=False; '
                                 'small_kernel_merged is an alias of deploy, pass one of them')
            deploy = bool(small_kernel_merged)
        norm_cfg = copy.deepcopy(norm_cfg) if norm_cfg is not None else dict(type='BN')
        if not isinstance(norm_cfg, dict) or 'type' not in norm_cfg:
            raise ValueError(f'norm_cfg must be an mmcv norm config dict with a "type", '
                             f'got {norm_cfg!r}')
        self.arch = _validate_arch(arch, self.arch_settings)
        self.arch_name = arch.upper() if isinstance(arch, str) else None
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f'num_classes must be an int >= 0, got {num_classes!r}')
        self._setup_common(out_indices, frozen_stages, norm_eval, drop_path_rate, has_classifier=num_classes > 0)
        self.num_classes = num_classes
        self.norm_cfg = norm_cfg
        self.norm_intermediate_features = norm_intermediate_features
        self.deploy = bool(deploy)
        self.fuse_bn = fuse_bn
        self.lk_impl = lk_impl
        fused = self.deploy and fuse_bn

        channels = self.arch['channels']
        layers = self.arch['layers']
        self.out_channels = [channels[i] for i in self.out_indices]

        c0 = channels[0]
        self.stem = nn.ModuleList([
            ConvBN(in_channels, c0, 3, stride=2, norm_cfg=norm_cfg, relu=True, fused=fused),
            ConvBN(c0, c0, 3, groups=c0, norm_cfg=norm_cfg, relu=True, fused=fused),
            ConvBN(c0, c0, 1, norm_cfg=norm_cfg, relu=True, fused=fused),
            ConvBN(c0, c0, 3, stride=2, groups=c0, norm_cfg=norm_cfg, relu=True, fused=fused),
        ])

        rates = self.drop_path_rates(drop_path_rate, sum(layers))
        self.stages = nn.ModuleList()
        self.transitions = nn.ModuleList()
        for i in range(self.num_stages):
            start = sum(layers[:i])
            self.stages.append(RepLKNetStage(
                channels[i], layers[i], self.arch['large_kernel_sizes'][i],
                self.arch['small_kernel'], self.arch['dw_ratio'], self.arch['ffn_ratio'],
                rates[start:start + layers[i]], norm_cfg, norm_intermediate_features,
                self.deploy, fused, lk_impl))
            if i < self.num_stages - 1:
                c_in, c_out = channels[i], channels[i + 1]
                self.transitions.append(nn.Sequential(
                    ConvBN(c_in, c_out, 1, norm_cfg=norm_cfg, relu=True, fused=fused),
                    ConvBN(c_out, c_out, 3, stride=2, groups=c_out, norm_cfg=norm_cfg, relu=True,
                           fused=fused)))
        self.with_cp = with_cp

        if num_classes > 0:
            self.norm = nn.Identity() if fused else build_norm_layer(norm_cfg, channels[-1])[1]
            self.head = nn.Linear(channels[-1], num_classes)
        self._freeze_stages()

    # ------------------------------------------------------------------ properties
    @property
    def has_classifier(self) -> bool:
        return self.num_classes > 0

    # ------------------------------------------------------------------ forward
    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.stem):
            # the first layer is never checkpointed (its input usually needs no gradient)
            if not torch.jit.is_scripting() and i > 0 and self.with_cp and torch.is_grad_enabled():
                x = checkpoint_with_bn_guard(layer, x, layer)
            else:
                x = layer(x)
        return x

    def forward_trunk(self, x: torch.Tensor) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """Run stem, stages and transitions; returns (``out_indices`` maps, raw last-stage map)."""
        x = self.forward_stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(stage.norm(x))
            if i < self.num_stages - 1:
                x = self.transitions[i](x)
        return outs, x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Classifier on the raw last-stage map: ``head(avgpool(norm(x)))``."""
        if not self.has_classifier:
            raise RuntimeError('this RepLKNet has no classifier; build it with num_classes > 0')
        x = self.norm(x).mean(dim=(2, 3))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        outs, last = self.forward_trunk(x)
        if self.has_classifier:
            outs.append(self.forward_head(last))
        return tuple(outs)

    # ------------------------------------------------------------------ training behaviour
    def _frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        # stages 0..k-1 and the transitions between them (transition i follows stage i)
        return ([self.stem] + [self.stages[i] for i in range(self.frozen_stages)]
                + [self.transitions[i] for i in range(max(self.frozen_stages - 1, 0))])

    # ------------------------------------------------------------------ deployment
    def switch_to_deploy(self, fuse_bn: Optional[bool] = None) -> None:
        """Merge every large-kernel block in place (idempotent); results equal in eval mode.

        Args:
            fuse_bn: Also fold every conv-norm pair, the pre-block BNs and the classifier norm into
                biased convs / the head. Defaults to the constructor's ``fuse_bn``.
        """
        super().switch_to_deploy(fuse_bn=fuse_bn)

    def _switch_to_deploy(self, fuse_bn: bool) -> None:
        for stage in self.stages:
            for blk in stage.blocks:
                blk.switch_to_deploy(fuse_bn=fuse_bn)
        if fuse_bn:
            for layer in list(self.stem) + [m for t in self.transitions for m in t]:
                layer.switch_to_deploy(fuse_bn=True)
            # (timm's num_classes=0 form has no Linear head to absorb the norm: it stays.)
            if (self.has_classifier and not isinstance(self.norm, nn.Identity)
                    and isinstance(self.head, nn.Linear)):
                weight, bias = fold_bn_into_next(self.head.weight, self.head.bias,
                                                 require_batchnorm(self.norm, 'the classifier norm'))
                with torch.no_grad():
                    self.head.weight.copy_(weight)
                    self.head.bias.copy_(bias)
                self.norm = nn.Identity()
        self.deploy = True
        self.fuse_bn = self.fuse_bn or fuse_bn
        self.build_kwargs['fuse_bn'] = self.fuse_bn

    # ------------------------------------------------------------------ checkpoints
    @property
    def form(self) -> str:
        return 'fused' if self.deploy and self.fuse_bn else ('merged' if self.deploy else 'train')

    # ------------------------------------------------------------------ layer-wise lr decay
    # Layer ids follow the upstream fine-tuning code (RepLKNet-pytorch ``optim_factory.py``): stage 2 in groups
    # of four ``blocks`` entries (two RepLKBlock/ConvFFN pairs); a transition shares the id of the layer just
    # before it (transition 2 goes with the last group of stage 2).
    @classmethod
    def _stage2_groups(cls, depth: int) -> int:
        return max(1, math.ceil(depth / 4))

    @classmethod
    def _stage2_group(cls, block: Optional[int], depth: int, groups: int) -> int:
        # the optional intermediate norm (stages.2.norm) goes with the last group of the stage
        return block // 4 if block is not None else groups - 1

    @classmethod
    def _outside_layer_id(cls, parts: List[str], stage_wise: bool, groups: int, num_layers: int) -> int:
        if parts[0] == 'transitions':
            index = int(parts[1])
            return index + 1 if stage_wise or index < 2 else 2 + groups
        return num_layers + 1

    def extra_repr(self) -> str:
        name = self.arch_name or 'custom'
        return (f'arch={name}, out_indices={self.out_indices}, num_classes={self.num_classes}, '
                f'deploy={self.deploy}, fuse_bn={self.fuse_bn}')
