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
from contextlib import contextmanager, nullcontext
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from mmlk.ops import LargeKernelDWConv2d
from mmlk.registry import MODELS, register_plain_alias
from ..utils.reparam import fold_bn_into_next, fuse_conv_bn, pad_kernel
from ..utils.validation import compare_state_dict, format_state_dict_mismatch, normalize_out_indices, state_prefix

__all__ = ['RepLKNet', 'RepLKBlock', 'ConvFFN', 'ReparamLargeKernelConv', 'ConvBN',
           'check_state_dict_fits', 'describe_replknet_state_dict']

# Depthwise kernels at least this large go through mmlk's large-kernel op; smaller ones stay nn.Conv2d.
LARGE_KERNEL_MIN = 7

_ARCH_FIELDS = ('large_kernel_sizes', 'layers', 'channels', 'small_kernel', 'dw_ratio', 'ffn_ratio')


def _make_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int,
               bias: bool, lk_impl: str) -> nn.Conv2d:
    """A conv with 'same' padding (k // 2); large stride-1 depthwise kernels use the mmlk op."""
    depthwise = groups == in_channels == out_channels and groups > 1
    if depthwise and stride == 1 and kernel_size >= LARGE_KERNEL_MIN:
        return LargeKernelDWConv2d(out_channels, kernel_size, bias=bias, impl=lk_impl)
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                     padding=kernel_size // 2, groups=groups, bias=bias)


def _rebuild_conv_with(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor,
                       lk_impl: str) -> nn.Conv2d:
    """A biased copy of ``conv`` (same geometry, real padding) holding ``weight`` and ``bias``."""
    new = _make_conv(conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.stride[0],
                     conv.groups, True, lk_impl)
    new = new.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        new.bias.copy_(bias)
    return new


def _norm_name(norm: nn.Module) -> str:
    return type(norm).__name__


def _fold_check(norm: nn.Module, where: str) -> None:
    if not isinstance(norm, _BatchNorm):
        raise ValueError(
            f'cannot merge {where}: it is normalised by {_norm_name(norm)}, which has no running '
            'statistics. Re-parameterisation is exact only for BatchNorm-like norms (BN, SyncBN); '
            'build the model with norm_cfg=dict(type="BN") (or SyncBN) to deploy it.')


class ConvBN(nn.Module):
    """Bias-free conv followed by a norm layer and optionally ReLU (official ``conv_bn[_relu]``).

    Children are named ``conv`` and ``bn`` (whatever the norm type) so keys match the official
    checkpoints. After :meth:`fuse_bn` (or when built with ``fused=True``) ``conv`` carries a bias and
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

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, norm_cfg: Optional[dict] = None, relu: bool = False,
                 fused: bool = False, lk_impl: str = 'auto') -> None:
        super().__init__()
        self.lk_impl = lk_impl
        self.conv = _make_conv(in_channels, out_channels, kernel_size, stride, groups, fused,
                               lk_impl)
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

    def fused_weight_bias(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Kernel and bias of a single conv equivalent to ``bn(conv(x))`` in eval mode."""
        if self.is_fused:
            return self.conv.weight, self.conv.bias
        _fold_check(self.bn, 'a conv-norm pair')
        return fuse_conv_bn(self.conv.weight, self.conv.bias, self.bn)

    def fuse_bn(self) -> None:
        """Fold the norm into a biased conv in place (idempotent)."""
        if self.is_fused:
            return
        weight, bias = self.fused_weight_bias()
        self.conv = _rebuild_conv_with(self.conv, weight.detach(), bias.detach(), self.lk_impl)
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
        self.lk_impl = lk_impl
        if deploy:
            self.lkb_reparam = _make_conv(channels, channels, kernel_size, 1, channels, True, lk_impl)
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

    def get_equivalent_kernel_bias(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Kernel and bias of the single KxK conv equal to the two branches in eval mode."""
        if self.is_merged:
            return self.lkb_reparam.weight, self.lkb_reparam.bias
        weight, bias = self.lkb_origin.fused_weight_bias()
        if hasattr(self, 'small_conv'):
            small_w, small_b = self.small_conv.fused_weight_bias()
            weight = weight + pad_kernel(small_w, (self.kernel_size, self.kernel_size))
            bias = bias + small_b
        return weight, bias

    def switch_to_deploy(self) -> None:
        """Merge both branches into ``lkb_reparam`` in place (idempotent)."""
        if self.is_merged:
            return
        weight, bias = self.get_equivalent_kernel_bias()
        self.lkb_reparam = _rebuild_conv_with(self.lkb_origin.conv, weight.detach(), bias.detach(),
                                              self.lk_impl)
        del self.lkb_origin
        if hasattr(self, 'small_conv'):
            del self.small_conv


def _fold_pre_bn(norm: nn.Module, layer: ConvBN, where: str) -> None:
    """Fold an eval-mode BN that feeds a fused 1x1 conv (``conv(bn(x))``) into that conv."""
    _fold_check(norm, where)
    conv = layer.conv
    weight, bias = fold_bn_into_next(conv.weight, conv.bias, norm)
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)


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
            self.pw1.fuse_bn()
            self.pw2.fuse_bn()
            if not isinstance(self.prelkb_bn, nn.Identity):
                _fold_pre_bn(self.prelkb_bn, self.pw1, 'prelkb_bn')
                self.prelkb_bn = nn.Identity()


class ConvFFN(nn.Module):
    """``x + drop_path(pw2(gelu(pw1(preffn_bn(x)))))``: the 1x1 feed-forward block of RepLKNet.

    Args:
        in_channels: Block width C.
        hidden_channels: Hidden width (``C * ffn_ratio``).
        drop_path: Stochastic-depth rate of the residual branch.
        norm_cfg: mmcv norm config.
        fused: Build every conv-norm pair folded.
    """

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
            self.pw1.fuse_bn()
            self.pw2.fuse_bn()
            if not isinstance(self.preffn_bn, nn.Identity):
                _fold_pre_bn(self.preffn_bn, self.pw1, 'preffn_bn')
                self.preffn_bn = nn.Identity()


@contextmanager
def _batchnorm_stats_scratch(module: nn.Module) -> Iterator[None]:
    """Let BN running-statistics updates go to throw-away copies while the context is active.

    Used for the recomputation pass of gradient checkpointing: without it every checkpointed BN
    would update its running mean/var twice per step. The buffers are swapped rather than restored
    by ``copy_`` so the recomputed graph saves the same tensors, untouched afterwards.
    """
    names = ('running_mean', 'running_var', 'num_batches_tracked')
    bns = [m for m in module.modules()
           if isinstance(m, _BatchNorm) and m.training and m.track_running_stats]
    originals = [tuple(getattr(m, n) for n in names) for m in bns]
    for m, bufs in zip(bns, originals):
        for n, buf in zip(names, bufs):
            if buf is not None:
                setattr(m, n, buf.clone())
    try:
        yield
    finally:
        for m, bufs in zip(bns, originals):
            for n, buf in zip(names, bufs):
                setattr(m, n, buf)


def _checkpointed(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return cp.checkpoint(module, x, use_reentrant=False,
                         context_fn=lambda: (nullcontext(), _batchnorm_stats_scratch(module)))


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
                x = _checkpointed(blk, x)
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
class RepLKNet(BaseModule):
    """RepLKNet backbone (Ding et al., "Scaling Up Your Kernels to 31x31", CVPR 2022).

    A 4-conv stem (stride 4), four stages of (RepLKBlock, ConvFFN) pairs separated by transitions
    (1x1 conv then stride-2 depthwise 3x3), optionally followed by the official classifier (``norm``
    BN, global average pooling, ``head`` Linear).

    Forward returns a tuple with the feature maps of ``out_indices`` (strides 4, 8, 16, 32). With
    ``num_classes > 0`` the logits are appended as the last element, so mmpretrain's ``ClsHead``
    (which reads ``feats[-1]``) consumes them and the official flat checkpoints (``norm.*``,
    ``head.*``) load into the backbone unchanged. A strict ``load_state_dict`` of weights that do not
    fit names both variants/forms (see :func:`check_state_dict_fits`).

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
            through :func:`mmlk.checkpoint.load_pretrained`. Defaults to None.
    """

    arch_settings: Dict[str, dict] = {
        '31B': dict(large_kernel_sizes=[31, 29, 27, 13], layers=[2, 2, 18, 2],
                    channels=[128, 256, 512, 1024], small_kernel=5, dw_ratio=1, ffn_ratio=4),
        '31L': dict(large_kernel_sizes=[31, 29, 27, 13], layers=[2, 2, 18, 2],
                    channels=[192, 384, 768, 1536], small_kernel=5, dw_ratio=1, ffn_ratio=4),
        'XL': dict(large_kernel_sizes=[27, 27, 27, 13], layers=[2, 2, 18, 2],
                   channels=[256, 512, 1024, 2048], small_kernel=None, dw_ratio=1.5, ffn_ratio=4),
    }
    num_stages = 4

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

        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f'num_classes must be an int >= 0, got {num_classes!r}')
        norm_idx = normalize_out_indices(out_indices, self.num_stages, has_classifier=num_classes > 0)
        if not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(f'frozen_stages must be in [-1, {self.num_stages}], '
                             f'got {frozen_stages}')
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f'drop_path_rate must be in [0, 1), got {drop_path_rate}')

        self._build_kwargs = dict(
            arch=copy.deepcopy(arch), in_channels=in_channels, out_indices=tuple(out_indices),
            num_classes=num_classes, drop_path_rate=drop_path_rate, frozen_stages=frozen_stages,
            norm_eval=norm_eval, with_cp=with_cp, norm_cfg=copy.deepcopy(norm_cfg),
            norm_intermediate_features=norm_intermediate_features, deploy=bool(deploy),
            fuse_bn=fuse_bn, lk_impl=lk_impl, init_cfg=copy.deepcopy(init_cfg))

        self.out_indices = tuple(sorted(norm_idx))
        self.num_classes = num_classes
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
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

        total = sum(layers)
        # Plain Python (not torch.linspace) so the model can be built on the meta device.
        rates = [drop_path_rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
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
    def with_cp(self) -> bool:
        return self._with_cp

    @with_cp.setter
    def with_cp(self, value: bool) -> None:
        # Kept on every stage too, so setting it after construction takes effect everywhere.
        self._with_cp = bool(value)
        for stage in self.stages:
            stage.with_cp = self._with_cp

    @property
    def has_classifier(self) -> bool:
        return self.num_classes > 0

    # ------------------------------------------------------------------ forward
    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.stem):
            # the first layer is never checkpointed (its input usually needs no gradient)
            if not torch.jit.is_scripting() and i > 0 and self.with_cp and torch.is_grad_enabled():
                x = _checkpointed(layer, x)
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
    def _freeze_stages(self) -> None:
        frozen: List[nn.Module] = []
        if self.frozen_stages >= 0:
            frozen.append(self.stem)
        for i in range(self.frozen_stages):
            frozen.append(self.stages[i])
            if i >= 1:
                frozen.append(self.transitions[i - 1])
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'RepLKNet':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def init_weights(self) -> None:
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            from mmlk.checkpoint import load_pretrained  # lazy: the loader imports heavier deps
            load_pretrained(self, cfg['checkpoint'], prefix=cfg.get('prefix'))
            self._is_init = True
            return
        super().init_weights()

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``; a strict load that does not fit raises a RuntimeError
        naming the model's and the file's variant/form and a few offending keys."""
        if strict:
            report = check_state_dict_fits(self, state_dict, raise_error=False)
            if report['message']:
                raise RuntimeError(report['message'])
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ------------------------------------------------------------------ deployment
    def switch_to_deploy(self, fuse_bn: Optional[bool] = None) -> None:
        """Merge every large-kernel block in place (idempotent); results equal in eval mode.

        Args:
            fuse_bn: Also fold every conv-norm pair, the pre-block BNs and the classifier norm into
                biased convs / the head. Defaults to the constructor's ``fuse_bn``.
        """
        fuse = self.fuse_bn if fuse_bn is None else bool(fuse_bn)
        for stage in self.stages:
            for blk in stage.blocks:
                blk.switch_to_deploy(fuse_bn=fuse)
        if fuse:
            for layer in list(self.stem) + [m for t in self.transitions for m in t]:
                layer.fuse_bn()
            # (timm's num_classes=0 form has no Linear head to absorb the norm: it stays.)
            if (self.has_classifier and not isinstance(self.norm, nn.Identity)
                    and isinstance(self.head, nn.Linear)):
                _fold_check(self.norm, 'the classifier norm')
                weight, bias = fold_bn_into_next(self.head.weight, self.head.bias,
                                                             self.norm)
                with torch.no_grad():
                    self.head.weight.copy_(weight)
                    self.head.bias.copy_(bias)
                self.norm = nn.Identity()
        self.deploy = True
        self.fuse_bn = self.fuse_bn or fuse
        self._build_kwargs.update(deploy=True, fuse_bn=self.fuse_bn)
        # New parameters start with requires_grad=True: re-apply freezing.
        self._freeze_stages()

    def extra_repr(self) -> str:
        name = self.arch_name or 'custom'
        return (f'arch={name}, out_indices={self.out_indices}, num_classes={self.num_classes}, '
                f'deploy={self.deploy}, fuse_bn={self.fuse_bn}')


# ---------------------------------------------------------------------- state-dict checks
_STRIP_PREFIXES = ('module.', 'backbone.', 'model.')


def describe_replknet_state_dict(state_dict: Dict[str, torch.Tensor]) -> dict:
    """Infer variant, form and extras of a RepLKNet state dict from its keys and shapes.

    Returns a dict with ``arch`` (an arch dict, or None when the keys are not RepLKNet's),
    ``arch_name`` ('31B', '31L', 'XL' or None), ``form`` ('training', 'merged', 'fused' or
    'unknown'), ``num_classes`` (0 without head), ``norm_intermediate_features`` and ``prefix`` (a
    leading ``backbone.``/``module.`` shared by every key, or '').
    """
    prefix = state_prefix(list(state_dict), _STRIP_PREFIXES)
    sd = {k[len(prefix):]: v for k, v in state_dict.items()}
    info: dict = dict(arch=None, arch_name=None, form='unknown', num_classes=0,
                      norm_intermediate_features=False, prefix=prefix)
    if 'head.weight' in sd:
        info['num_classes'] = int(sd['head.weight'].shape[0])
    info['norm_intermediate_features'] = any(k.startswith(f'stages.{i}.norm.') for i in range(4)
                                             for k in sd)
    if any('.lkb_origin.' in k for k in sd):
        info['form'] = 'training'
    elif any('.lkb_reparam.' in k for k in sd):
        info['form'] = 'fused' if 'stem.0.conv.bias' in sd else 'merged'
    try:
        layers, kernels, channels = [], [], []
        small, dw_ratio, ffn_ratio = None, None, None
        for i in range(4):
            idx = {int(k.split('.')[3]) for k in sd if k.startswith(f'stages.{i}.blocks.')}
            if not idx:
                return info
            layers.append((max(idx) + 1) // 2)
            lk = sd.get(f'stages.{i}.blocks.0.large_kernel.lkb_origin.conv.weight',
                        sd.get(f'stages.{i}.blocks.0.large_kernel.lkb_reparam.weight'))
            pw1 = sd[f'stages.{i}.blocks.0.pw1.conv.weight']
            ffn = sd[f'stages.{i}.blocks.1.pw1.conv.weight']
            kernels.append(int(lk.shape[-1]))
            channels.append(int(pw1.shape[1]))
            dw_ratio = pw1.shape[0] / pw1.shape[1]
            ffn_ratio = ffn.shape[0] / ffn.shape[1]
            sc = sd.get(f'stages.{i}.blocks.0.large_kernel.small_conv.conv.weight')
            if sc is not None:
                small = int(sc.shape[-1])
    except (KeyError, IndexError, ValueError, AttributeError):
        return info

    def _num(v: float) -> Union[int, float]:
        return int(v) if float(v).is_integer() else float(v)

    arch = dict(large_kernel_sizes=kernels, layers=layers, channels=channels, small_kernel=small,
                dw_ratio=_num(dw_ratio), ffn_ratio=_num(ffn_ratio))
    if info['form'] == 'merged' or info['form'] == 'fused':
        # The merged form does not record the small kernel; assume the official one when the rest
        # matches an official variant.
        for name, ref in RepLKNet.arch_settings.items():
            if {**ref, 'small_kernel': None} == {**arch, 'small_kernel': None}:
                arch['small_kernel'] = ref['small_kernel']
    info['arch'] = arch
    for name, ref in RepLKNet.arch_settings.items():
        if ref == arch:
            info['arch_name'] = name
    return info


def _describe_model(model: RepLKNet) -> str:
    name = f'RepLKNet-{model.arch_name}' if model.arch_name else f'RepLKNet(custom {model.arch})'
    form = 'fused' if model.deploy and model.fuse_bn else ('merged' if model.deploy else 'training')
    head = f'{model.num_classes}-class head' if model.num_classes else 'no head'
    inter = ', intermediate norms' if model.norm_intermediate_features else ''
    return f'{name} ({form} form, {head}{inter})'


def _describe_info(info: dict) -> str:
    if info['arch'] is None:
        return 'not a recognisable RepLKNet state dict'
    name = f'RepLKNet-{info["arch_name"]}' if info['arch_name'] else f'RepLKNet(custom {info["arch"]})'
    head = f'{info["num_classes"]}-class head' if info['num_classes'] else 'no head'
    inter = ', intermediate norms' if info['norm_intermediate_features'] else ''
    pre = f', keys prefixed {info["prefix"]!r}' if info['prefix'] else ''
    return f'{name} ({info["form"]} form, {head}{inter}{pre})'


def check_state_dict_fits(model: RepLKNet, state_dict: Dict[str, torch.Tensor],
                          raise_error: bool = True, max_listed: int = 5) -> dict:
    """Check that ``state_dict`` has exactly the keys and shapes of ``model``.

    Args:
        model: A :class:`RepLKNet`.
        state_dict: The weights, already stripped of any wrapper prefix.
        raise_error: Raise ``ValueError`` on any difference (default); otherwise only report.
        max_listed: How many missing / unexpected / mismatched keys the message lists.

    Returns:
        ``dict(missing=[...], unexpected=[...], mismatched=[(key, ckpt_shape, model_shape)],
        checkpoint=<describe_replknet_state_dict(...)>, message=str)``; ``message`` is '' if it fits.

    Raises:
        ValueError: If keys or shapes differ and ``raise_error``; the message names the model's and
            the checkpoint's variant/form and lists a few offending keys.
    """
    missing, unexpected, mismatched = compare_state_dict(model.state_dict(), state_dict)
    info = describe_replknet_state_dict(state_dict)
    message = ''
    if missing or unexpected or mismatched:
        hints = []
        if info['prefix']:
            hints.append(f'Every key starts with {info["prefix"]!r}: strip it (prefix=...).')
        elif info['form'] == 'training' and model.deploy:
            hints.append('Load it into a training-form model (deploy=False) and call '
                         'switch_to_deploy(), or convert it with '
                         'tools/model_converters/reparameterize.py.')
        elif info['form'] in ('merged', 'fused') and not model.deploy:
            hints.append('It holds merged weights: build the model with deploy=True'
                         + (', fuse_bn=True' if info['form'] == 'fused' else '') + '.')
        message = format_state_dict_mismatch(_describe_model(model), _describe_info(info), hints, missing,
                                             unexpected, mismatched, max_listed)
        if raise_error:
            raise ValueError(message)
    return dict(missing=missing, unexpected=unexpected, mismatched=mismatched, checkpoint=info,
                message=message)


# ---------------------------------------------------------------------- timm factories
try:
    from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
    from timm.models._features import FeatureGetterNet, feature_take_indices
    from timm.models._builder import pretrained_cfg_for_features
except ImportError:  # timm is optional
    build_model_with_cfg = None

if build_model_with_cfg is not None:

    class TimmRepLKNet(RepLKNet):
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

        # TorchScript compiles every property, and mmengine's BaseModule.is_init setter assigns values it cannot
        # type; the property is bookkeeping of init_weights, never used by forward.
        __jit_unused_properties__ = ['is_init']

        def __init__(self, arch: Union[str, dict] = '31B', num_classes: int = 1000,
                     in_chans: int = 3, global_pool: str = 'avg', drop_path_rate: float = 0.0,
                     **kwargs) -> None:
            _check_global_pool(global_pool, num_classes)
            kwargs.setdefault('out_indices', ())
            super().__init__(arch=arch, in_channels=in_chans, num_classes=max(num_classes, 1),
                             drop_path_rate=drop_path_rate, **kwargs)
            self._build_kwargs.update(num_classes=num_classes, global_pool=global_pool,
                                      in_chans=self._build_kwargs.pop('in_channels'))
            self.num_classes = num_classes
            self.global_pool = global_pool
            if num_classes == 0:
                self.head = nn.Identity()
                if self.deploy and self.fuse_bn:
                    # No Linear head to absorb the final norm, so the fused form keeps it.
                    self.norm = build_norm_layer(self.norm_cfg, self.arch['channels'][-1])[1]
            chans = self.arch['channels']
            self.num_features = self.head_hidden_size = chans[-1]
            self.feature_info = [dict(num_chs=c, reduction=4 * 2**i, module=f'stages.{i}')
                                 for i, c in enumerate(chans)]

        @property
        def has_classifier(self) -> bool:
            return True

        def get_classifier(self) -> nn.Module:
            return self.head

        def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
            """New Linear head (or none for ``num_classes=0``); ``global_pool`` ``'avg'`` or ``''``."""
            pool = self.global_pool if global_pool is None else global_pool
            _check_global_pool(pool, num_classes)
            self.num_classes = num_classes
            self.global_pool = pool
            self.head = (nn.Linear(self.num_features, num_classes) if num_classes > 0
                         else nn.Identity())

        def forward_intermediates(self, x: torch.Tensor, indices=None, norm: bool = False,
                                  stop_early: bool = False, output_fmt: str = 'NCHW',
                                  intermediates_only: bool = False):
            if output_fmt != 'NCHW':
                raise ValueError(f'RepLKNet returns NCHW features, got output_fmt={output_fmt!r}')
            take, max_index = feature_take_indices(self.num_stages, indices)
            x = self.forward_stem(x)
            feats = []
            last = max_index if stop_early else self.num_stages - 1
            for i in range(last + 1):
                x = self.stages[i](x)
                if i in take:
                    y = self.stages[i].norm(x)
                    feats.append(self.norm(y) if norm and i == self.num_stages - 1 else y)
                if i < self.num_stages - 1 and i < last:
                    x = self.transitions[i](x)
            if intermediates_only:
                return feats
            return x, feats

        def prune_intermediate_layers(self, indices=1, prune_norm: bool = False,
                                      prune_head: bool = True) -> List[int]:
            take, _ = feature_take_indices(self.num_stages, indices)
            if prune_norm:
                self.norm = nn.Identity()
            if prune_head:
                self.reset_classifier(0)
            return take

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

    def _check_global_pool(global_pool: str, num_classes: int) -> None:
        if global_pool not in ('avg', ''):
            raise ValueError(f"RepLKNet supports global_pool='avg' or '' (no pooling), got {global_pool!r}")
        if global_pool == '' and num_classes > 0:
            raise ValueError("global_pool='' returns unpooled feature maps, which a Linear head cannot take: "
                             'pass num_classes=0 with it (timm.create_model(..., num_classes=0, '
                             "global_pool='') or model.reset_classifier(0, ''))")

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
    # timm name.tag -> mmlk checkpoints.yaml name.
    TIMM_CHECKPOINTS = {
        'replknet_31b.in1k': 'replknet-31b_in1k-224',
        'replknet_31b.in1k_384': 'replknet-31b_in1k-384',
        'replknet_31b.in22k_ft_in1k': 'replknet-31b_in21k-pre_in1k-224',
        'replknet_31b.in22k_ft_in1k_384': 'replknet-31b_in21k-pre_in1k-384',
        'replknet_31b.in22k': 'replknet-31b_in21k-224',
        'replknet_31l.in22k_ft_in1k_384': 'replknet-31l_in21k-pre_in1k-384',
        'replknet_31l.in22k': 'replknet-31l_in21k-224',
        'replknet_xl.meg73m_ft_in1k_320': 'replknet-xl_meg73m-pre_in1k-320',
    }

    def _create_timm(variant: str, arch: str, pretrained: bool, **kwargs) -> nn.Module:
        features_only = kwargs.pop('features_only', False)
        out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
        feature_cls = kwargs.pop('feature_cls', 'getter')
        if features_only and feature_cls != 'getter':
            raise ValueError(f'RepLKNet supports only feature_cls="getter" (its stages and '
                             f'transitions interleave), got {feature_cls!r}')
        model = build_model_with_cfg(TimmRepLKNet, variant, False, arch=arch, **kwargs)
        if pretrained:
            name = f'{variant}.{model.pretrained_cfg.get("tag") or ""}'.rstrip('.')
            if name not in TIMM_CHECKPOINTS:
                raise ValueError(f'no released weights for {name}; tags with weights: '
                                 f'{sorted(TIMM_CHECKPOINTS)}')
            from mmlk.checkpoint import load_pretrained  # lazy: the loader pulls more deps
            load_pretrained(model, TIMM_CHECKPOINTS[name])
        if features_only:
            cfg = model.pretrained_cfg
            model = FeatureGetterNet(model, out_indices=out_indices)
            model.pretrained_cfg = model.default_cfg = pretrained_cfg_for_features(cfg)
        return model

    @register_model
    def replknet_31b(pretrained: bool = False, **kwargs) -> nn.Module:
        """RepLKNet-31B (kernels 31/29/27/13, channels 128-1024)."""
        return _create_timm('replknet_31b', '31B', pretrained, **kwargs)

    @register_model
    def replknet_31l(pretrained: bool = False, **kwargs) -> nn.Module:
        """RepLKNet-31L (kernels 31/29/27/13, channels 192-1536)."""
        return _create_timm('replknet_31l', '31L', pretrained, **kwargs)

    @register_model
    def replknet_xl(pretrained: bool = False, **kwargs) -> nn.Module:
        """RepLKNet-XL (kernels 27/27/27/13, channels 256-2048, dw_ratio 1.5, no small kernel)."""
        return _create_timm('replknet_xl', 'XL', pretrained, **kwargs)
