"""RepNeXt: a fast multi-scale CNN using structural re-parameterisation.

Zhao, Luo and Ouyang, "RepNeXt: A Fast Multi-Scale CNN using Structural Reparameterization",
arXiv 2406.16004. One implementation serves mmpretrain, mmseg, mmdet (``type='mmlk.RepNeXt'``) and timm
(``timm.create_model('repnext_m3')`` after ``import mmlk``).

Module names reproduce the released checkpoints (``stem.stem.0.conv.weight``,
``stages.1.downsample.token_mixer.conv_s.conv_3_3.weight``, ...), so the training-form weights load
without renaming. The deploy form (``deploy=True`` or :meth:`RepNeXt.switch_to_deploy`) merges

* every multi-branch depthwise group (``conv_s``, ``conv_m``) into one biased conv: parallel branches are
  zero-padded to the largest kernel and summed, serial bias-free ``1 x k -> k x 1`` pairs become their
  outer product, the dilated ``2 x 2`` becomes a sparse ``3 x 3``;
* every ConvNorm into a biased conv;
* beyond upstream (``fold_block_norm=True``), the block BatchNorm into the following 1x1 conv, and the
  downsample BatchNorm into the preceding depthwise convs. Both are exact; with ``fold_block_norm=False``
  the deploy form has exactly the upstream fused layout and parameter count.

``conv_l`` (biased ``1 x 11`` then biased ``11 x 1``) stays two convs, as upstream: the first bias meets the
second conv's zero padding, so the 11 x 11 product is not exact at the borders (and two thin convs are
cheaper than one 11 x 11 anyway).

Beyond upstream, training speed: the branches of ``conv_s`` and ``conv_m`` carry no per-branch norm, so
``merge_branches=True`` computes each group in the training form as ONE convolution whose kernel is built
(differentiably) from the branch parameters on every call. Forward values and the gradients of every
branch parameter equal the branch-by-branch computation up to float rounding; see
``tools/analysis/benchmark_repnext.py`` for the measured speed-up.
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmcv.cnn.bricks import DropPath

from mmlk.ops import dwconv2d
from mmlk.registry import MODELS, register_plain_alias
from ..utils.conv import LARGE_KERNEL_MIN, conv_from_weights, conv_like, make_conv
from ..utils.reparam import (bn_scale_shift, dilate_kernel, fold_bn_into_next, fuse_conv_bn, pad_kernel,
                             reparameterize, require_batchnorm, serial_kernel)
from ..base import RepBackbone, checkpoint_with_bn_guard
from .keys import RepNeXtKeys
from .single_branch import SingleBranchChunkConv, SingleBranchCopyConv

#: Token mixers an arch can use: re-parameterised branch groups (M0-M5), one single-branch conv ("E"
#: variants), or plain convs per chunk (the ChunkConv of upstream's README).
TOKEN_MIXERS = ('rep', 'single', 'chunk')

_Pair = Tuple[int, int]


def _dw_conv(channels: int, kernel_size: Union[int, _Pair], stride: Union[int, _Pair] = 1,
             padding: Union[int, _Pair, None] = None, dilation: int = 1, bias: bool = True,
             lk_impl: str = 'auto') -> nn.Conv2d:
    """A depthwise :func:`~mmlk.models.utils.conv.make_conv`."""
    return make_conv(channels, channels, kernel_size, stride, padding, dilation, channels, bias, lk_impl)


def _dw_apply(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: int,
              lk_impl: str) -> torch.Tensor:
    """Depthwise conv with an odd square kernel, 'same' padding, through the large-kernel op if big."""
    k = weight.shape[-1]
    if not torch.jit.is_scripting() and stride == 1 and k >= LARGE_KERNEL_MIN:
        return dwconv2d(x, weight, bias, impl=lk_impl)
    # (TorchScript cannot compile the large-kernel op's dispatch: a scripted model uses F.conv2d.)
    return F.conv2d(x, weight, bias, stride, k // 2, 1, x.shape[1])


class ConvNorm(nn.Sequential):
    """Conv (no bias) followed by a norm; children ``conv`` and ``norm`` as in the released weights."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 padding: int = 0, norm_cfg: Optional[Dict] = None) -> None:
        super().__init__()
        self.add_module('conv', nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False))
        self.add_module('norm', build_norm_layer(norm_cfg or dict(type='BN'), out_channels)[1])

    def equivalent_kernel_bias(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Kernel and bias of the single conv equal to ``norm(conv(x))`` in eval mode."""
        return fuse_conv_bn(self.conv.weight, self.conv.bias, require_batchnorm(self.norm, 'a ConvNorm'))

    @torch.no_grad()
    def switch_to_deploy(self) -> nn.Conv2d:
        """The biased conv that replaces this module (the released deploy layout has no ``conv``/``norm``
        children here); :func:`~mmlk.models.utils.reparam.reparameterize` puts it in place."""
        weight, bias = self.equivalent_kernel_bias()
        return conv_like(self.conv, weight, bias)


def _conv_or_convnorm(in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int,
                      norm_cfg: Dict, deploy: bool) -> nn.Module:
    if deploy:
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=True)
    return ConvNorm(in_channels, out_channels, kernel_size, stride, padding, norm_cfg)


def _deploy_dw(channels: int, kernel_size: int, stride: int, lk_impl: str) -> nn.Conv2d:
    return _dw_conv(channels, kernel_size, stride, bias=True, lk_impl=lk_impl)


class _RepDWBranches(nn.Module):
    """Depthwise branch group without per-branch norms, equal to one ``k x k`` conv.

    Subclasses define the branches and :meth:`equivalent_kernel_bias`, which builds the single kernel
    differentiably from the branch parameters.
    """

    kernel_size: int

    def __init__(self, channels: int, stride: int, merge_branches: bool, lk_impl: str) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f'stride must be 1 or 2, got {stride}')
        self.channels = channels
        self.stride = stride
        self.merge_branches = merge_branches
        self.lk_impl = lk_impl

    def equivalent_kernel_bias(self) -> Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward_branches(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (a scripted model runs the branches themselves: same sum, and TorchScript never compiles the
        # kernel arithmetic with its optional biases)
        if not torch.jit.is_scripting() and self.merge_branches:
            weight, bias = self.equivalent_kernel_bias()
            return _dw_apply(x, weight, bias, self.stride, self.lk_impl)
        return self.forward_branches(x)

    @torch.no_grad()
    def switch_to_deploy(self) -> nn.Conv2d:
        """The single biased depthwise conv that replaces this group (see :meth:`ConvNorm.switch_to_deploy`)."""
        weight, bias = self.equivalent_kernel_bias()
        return conv_from_weights(weight, bias, self.stride, groups=self.channels, lk_impl=self.lk_impl)


class RepDWConvS(_RepDWBranches):
    """Small-kernel group (3 x 3 equivalent).

    Stride 1: parallel biased 3x3, 1x3, 3x1 and 2x2 dilation 2. Stride 2: 3x3, the serial bias-free
    pair 1x3 (stride (1, 2)) then 3x1 (stride (2, 1)), and the 2x2 dilation 2.
    """

    kernel_size = 3

    def __init__(self, channels: int, stride: int = 1, merge_branches: bool = True,
                 lk_impl: str = 'auto') -> None:
        super().__init__(channels, stride, merge_branches, lk_impl)
        c, s = channels, stride
        self.conv_3_3 = _dw_conv(c, 3, s, 1, bias=True)
        self.conv_3_w = _dw_conv(c, (1, 3), (1, s), (0, 1), bias=s == 1)
        self.conv_3_h = _dw_conv(c, (3, 1), (s, 1), (1, 0), bias=s == 1)
        self.conv_2_2 = _dw_conv(c, 2, s, 1, dilation=2, bias=True)

    def forward_branches(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return self.conv_3_3(x) + self.conv_3_w(x) + self.conv_3_h(x) + self.conv_2_2(x)
        return self.conv_3_3(x) + self.conv_3_h(self.conv_3_w(x)) + self.conv_2_2(x)

    def equivalent_kernel_bias(self) -> Tuple[torch.Tensor, torch.Tensor]:
        k = self.conv_3_3.weight + dilate_kernel(self.conv_2_2.weight, 2)
        b = self.conv_3_3.bias + self.conv_2_2.bias
        if self.stride == 1:
            k = k + pad_kernel(self.conv_3_w.weight, (3, 3)) + pad_kernel(self.conv_3_h.weight, (3, 3))
            b = b + self.conv_3_w.bias + self.conv_3_h.bias
        else:
            k = k + serial_kernel(self.conv_3_w.weight, self.conv_3_h.weight)
        return k, b


class RepDWConvM(_RepDWBranches):
    """Medium-kernel group (7 x 7 equivalent): parallel biased 7x7, 5x3, 3x5 plus the serial bias-free
    pairs 1x7 -> 7x1 and 1x5 -> 5x1 (strides split as (1, s) then (s, 1))."""

    kernel_size = 7

    def __init__(self, channels: int, stride: int = 1, merge_branches: bool = True,
                 lk_impl: str = 'auto') -> None:
        super().__init__(channels, stride, merge_branches, lk_impl)
        c, s, lk = channels, stride, lk_impl
        self.conv_7_7 = _dw_conv(c, 7, s, 3, bias=True, lk_impl=lk)
        self.conv_5_3 = _dw_conv(c, (5, 3), s, (2, 1), bias=True)
        self.conv_3_5 = _dw_conv(c, (3, 5), s, (1, 2), bias=True)
        self.conv_7_w = _dw_conv(c, (1, 7), (1, s), (0, 3), bias=False, lk_impl=lk)
        self.conv_7_h = _dw_conv(c, (7, 1), (s, 1), (3, 0), bias=False, lk_impl=lk)
        self.conv_5_w = _dw_conv(c, (1, 5), (1, s), (0, 2), bias=False)
        self.conv_5_h = _dw_conv(c, (5, 1), (s, 1), (2, 0), bias=False)

    def forward_branches(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv_7_7(x) + self.conv_5_3(x) + self.conv_3_5(x) + self.conv_7_h(self.conv_7_w(x))
                + self.conv_5_h(self.conv_5_w(x)))

    def equivalent_kernel_bias(self) -> Tuple[torch.Tensor, torch.Tensor]:
        size = (7, 7)
        k = (self.conv_7_7.weight + pad_kernel(self.conv_5_3.weight, size)
             + pad_kernel(self.conv_3_5.weight, size)
             + serial_kernel(self.conv_7_w.weight, self.conv_7_h.weight)
             + pad_kernel(serial_kernel(self.conv_5_w.weight, self.conv_5_h.weight), size))
        b = self.conv_7_7.bias + self.conv_5_3.bias + self.conv_3_5.bias
        return k, b



def _small_and_medium(channels: int, stride: int, merged: bool, merge_branches: bool,
                      lk_impl: str) -> Tuple[nn.Module, nn.Module]:
    """The 3x3 and 7x7 depthwise branches shared by the chunk mixer and the downsample: plain convs when
    ``merged`` (deploy or the plain form), else their re-parameterisable training forms."""
    if merged:
        return _deploy_dw(channels, 3, stride, lk_impl), _deploy_dw(channels, 7, stride, lk_impl)
    return (RepDWConvS(channels, stride, merge_branches, lk_impl),
            RepDWConvM(channels, stride, merge_branches, lk_impl))

class ChunkConv(nn.Module):
    """Token mixer of a block: four channel chunks -> identity, ``conv_s``, ``conv_m``, ``conv_l``.

    Normally ``conv_s``/``conv_m`` are re-parameterised branch groups and ``conv_l`` is a biased ``1 x 11``
    then biased ``11 x 1`` pair. With ``plain=True`` (``token_mixer='chunk'``, the ChunkConv of upstream's
    README) the three convolutions are plain biased depthwise 3x3, 7x7 and 11x11 convs.
    """

    def __init__(self, channels: int, deploy: bool = False, merge_branches: bool = True,
                 lk_impl: str = 'auto', plain: bool = False) -> None:
        super().__init__()
        if channels % 4:
            raise ValueError(f'RepNeXt block width must be divisible by 4 (four chunks), got {channels}')
        c = channels // 4
        self.plain = plain
        self.conv_s, self.conv_m = _small_and_medium(c, 1, deploy or plain, merge_branches, lk_impl)
        if plain:
            self.conv_l = _deploy_dw(c, 11, 1, lk_impl)
        else:
            self.conv_l = nn.Sequential(_dw_conv(c, (1, 11), 1, (0, 5), bias=True, lk_impl=lk_impl),
                                        _dw_conv(c, (11, 1), 1, (5, 0), bias=True, lk_impl=lk_impl))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i, s, m, l = torch.chunk(x, 4, dim=1)
        return torch.cat((i, self.conv_s(s), self.conv_m(m), self.conv_l(l)), dim=1)

    @torch.no_grad()
    def to_single_branch(self) -> 'SingleBranchChunkConv':
        """Return the one 11 x 11 depthwise conv (plus exact border bias) this mixer equals.

        Needs the merged form (``conv_s``/``conv_m`` single convs, as after ``switch_to_deploy``).
        The identity chunk becomes a centred 1; ``conv_s``/``conv_m`` are zero-padded to 11 x 11.
        """
        if not all(isinstance(m, nn.Conv2d) for m in (self.conv_s, self.conv_m)):
            raise RuntimeError('ChunkConv.to_single_branch needs the merged form: call switch_to_deploy() '
                               'first (RepNeXt.switch_to_deploy(single_branch=True) does both)')
        ref = self.conv_s.weight
        c, k = ref.shape[0], SingleBranchChunkConv.kernel_size
        ident = ref.new_zeros(c, 1, k, k)
        ident[:, :, k // 2, k // 2] = 1
        size = (k, k)
        edge = None
        if isinstance(self.conv_l, nn.Sequential):
            row, col = self.conv_l[0], self.conv_l[1]
            # (1 x 11 then 11 x 1) = their outer product, except that the first bias b1 only reaches the
            # second conv inside the image: bias b2 + b1 * sum(col) in the interior and a per-row
            # correction -b1 * (taps of col that fall on the zero padding) near the top / bottom.
            w_l = serial_kernel(row.weight, col.weight)
            b_l = col.bias + row.bias * col.weight.flatten(1).sum(1)
            edge = torch.cat((ref.new_zeros(3 * c, k), row.bias[:, None] * col.weight.flatten(1)), dim=0)
        else:
            w_l, b_l = self.conv_l.weight, self.conv_l.bias
        weight = torch.cat((ident, pad_kernel(self.conv_s.weight, size), pad_kernel(self.conv_m.weight, size),
                            w_l), dim=0)
        bias = torch.cat((ref.new_zeros(c), self.conv_s.bias, self.conv_m.bias, b_l))
        impl = getattr(self.conv_m, 'impl', 'auto')
        fused = SingleBranchChunkConv(4 * c, border_bias=edge is not None, lk_impl=impl).to(ref)
        fused.conv.weight.copy_(weight)
        fused.conv.bias.copy_(bias)
        if edge is not None:
            fused.edge_taps.copy_(edge)
        return fused


class CopyConv(nn.Module):
    """Token mixer of a downsample: stride-2 ``conv_s`` and ``conv_m`` on the full input, concatenated.

    With ``plain=True`` (``token_mixer='chunk'``) they are plain biased depthwise 3x3 and 7x7 stride-2 convs.
    """

    def __init__(self, channels: int, deploy: bool = False, merge_branches: bool = True,
                 lk_impl: str = 'auto', plain: bool = False) -> None:
        super().__init__()
        self.plain = plain
        self.conv_s, self.conv_m = _small_and_medium(channels, 2, deploy or plain, merge_branches, lk_impl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.conv_s(x), self.conv_m(x)), dim=1)

    @torch.no_grad()
    def to_single_branch(self) -> 'SingleBranchCopyConv':
        """Return the one 7 x 7 stride-2 depthwise conv over the copied input that this mixer equals."""
        if not all(isinstance(m, nn.Conv2d) for m in (self.conv_s, self.conv_m)):
            raise RuntimeError('CopyConv.to_single_branch needs the merged form: call switch_to_deploy() first')
        k = SingleBranchCopyConv.kernel_size
        weight = torch.cat((pad_kernel(self.conv_s.weight, (k, k)), self.conv_m.weight), dim=0)
        bias = torch.cat((self.conv_s.bias, self.conv_m.bias))
        fused = SingleBranchCopyConv(self.conv_s.in_channels).to(weight)
        fused.conv.weight.copy_(weight)
        fused.conv.bias.copy_(bias)
        return fused


_SINGLE_BRANCH = (SingleBranchChunkConv, SingleBranchCopyConv)


def _channel_mixer(channels: int, hidden: int, norm_cfg: Dict, act_cfg: Dict, deploy: bool) -> nn.Sequential:
    return nn.Sequential(
        _conv_or_convnorm(channels, hidden, 1, 1, 0, norm_cfg, deploy),
        build_activation_layer(act_cfg),
        _conv_or_convnorm(hidden, channels, 1, 1, 0, norm_cfg, deploy))


class _RepNeXtUnit(nn.Module):
    """Shared plumbing of blocks and downsamples: checkpointing and idempotent deploy switching."""

    def __init__(self, deploy: bool, fold_block_norm: bool, with_cp: bool) -> None:
        super().__init__()
        self.deploy = deploy
        self.fold_block_norm = fold_block_norm
        self.with_cp = with_cp

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and self.with_cp and torch.is_grad_enabled():
            return checkpoint_with_bn_guard(self._forward, x, self)
        return self._forward(x)

    def fold_norm(self) -> None:
        """Fold the unit's norm into the neighbouring convs (exact) and drop it; needs merged mixers."""
        self._fold_norm_into_convs()
        self.norm = nn.Identity()
        self.fold_block_norm = True

    def _fold_norm_into_convs(self) -> None:
        raise NotImplementedError

    def switch_to_deploy(self, single_branch: bool = False) -> None:
        """Merge in place (running BN statistics are used). Calling it again does nothing.

        ``single_branch=True`` then also folds the token mixer into one depthwise conv (it can be asked
        for after an earlier multi-branch merge, too).
        """
        if not self.deploy:
            reparameterize(self.token_mixer)
            reparameterize(self.channel_mixer)
            if self.fold_block_norm:
                self.fold_norm()
            self.deploy = True
        if single_branch and not isinstance(self.token_mixer, _SINGLE_BRANCH):
            # after the norm fold, so the downsample's norm already sits in conv_s / conv_m
            self.token_mixer = self.token_mixer.to_single_branch()


class MetaNeXtBlock(_RepNeXtUnit):
    """``x + drop_path(channel_mixer(norm(token_mixer(x))))`` with a ChunkConv token mixer."""

    def __init__(self, channels: int, mlp_ratio: float = 2., norm_cfg: Optional[Dict] = None,
                 act_cfg: Optional[Dict] = None, drop_path: float = 0., deploy: bool = False,
                 fold_block_norm: bool = True, merge_branches: bool = True, lk_impl: str = 'auto',
                 with_cp: bool = False, token_mixer: str = 'rep', single_branch: bool = False) -> None:
        super().__init__(deploy, fold_block_norm, with_cp)
        norm_cfg = norm_cfg or dict(type='BN')
        if token_mixer == 'single' or (deploy and single_branch):
            # only the multi-branch form's conv_l (two biased convs in series) needs the border term
            self.token_mixer = SingleBranchChunkConv(channels, border_bias=token_mixer == 'rep', lk_impl=lk_impl)
        else:
            self.token_mixer = ChunkConv(channels, deploy, merge_branches, lk_impl, plain=token_mixer == 'chunk')
        self.norm = nn.Identity() if deploy and fold_block_norm else build_norm_layer(norm_cfg, channels)[1]
        self.channel_mixer = _channel_mixer(channels, int(channels * mlp_ratio), norm_cfg,
                                            act_cfg or dict(type='GELU'), deploy)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.channel_mixer(self.norm(self.token_mixer(x))))

    def _fold_norm_into_convs(self) -> None:
        # The norm feeds only the first 1x1 conv (no padding), so folding it there is exact.
        conv = self.channel_mixer[0]
        with torch.no_grad():
            w, b = fold_bn_into_next(conv.weight, conv.bias, require_batchnorm(self.norm, 'a MetaNeXtBlock norm'))
            conv.weight.copy_(w)
            conv.bias.copy_(b)


class Downsample(_RepNeXtUnit):
    """``y = norm(CopyConv(x)); y + channel_mixer(y)``: halves the resolution, doubles the width."""

    def __init__(self, in_channels: int, mlp_ratio: float = 2., norm_cfg: Optional[Dict] = None,
                 act_cfg: Optional[Dict] = None, deploy: bool = False, fold_block_norm: bool = True,
                 merge_branches: bool = True, lk_impl: str = 'auto', with_cp: bool = False,
                 token_mixer: str = 'rep', single_branch: bool = False) -> None:
        super().__init__(deploy, fold_block_norm, with_cp)
        norm_cfg = norm_cfg or dict(type='BN')
        out_channels = in_channels * 2
        if token_mixer == 'single' or (deploy and single_branch):
            self.token_mixer = SingleBranchCopyConv(in_channels)
        else:
            self.token_mixer = CopyConv(in_channels, deploy, merge_branches, lk_impl, plain=token_mixer == 'chunk')
        self.norm = (nn.Identity() if deploy and fold_block_norm
                     else build_norm_layer(norm_cfg, out_channels)[1])
        self.channel_mixer = _channel_mixer(out_channels, int(out_channels * mlp_ratio), norm_cfg,
                                            act_cfg or dict(type='GELU'), deploy)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.token_mixer(x))
        return x + self.channel_mixer(x)

    def _fold_norm_into_convs(self) -> None:
        # The normed tensor also feeds the residual, so the norm cannot go into the 1x1 conv; it directly
        # follows the two depthwise convs instead (first half of its channels conv_s, second half conv_m).
        scale, shift = bn_scale_shift(require_batchnorm(self.norm, 'a Downsample norm'))
        c = scale.numel() // 2
        if isinstance(self.token_mixer, SingleBranchCopyConv):  # one conv, same [s..., m...] channel order
            parts = ((self.token_mixer.conv, slice(None)), )
        else:
            parts = ((self.token_mixer.conv_s, slice(0, c)), (self.token_mixer.conv_m, slice(c, None)))
        with torch.no_grad():
            for conv, sl in parts:
                conv.weight.mul_(scale[sl].reshape(-1, 1, 1, 1))
                conv.bias.mul_(scale[sl]).add_(shift[sl])


class RepNeXtStem(nn.Module):
    """Two stride-2 3x3 ConvNorms with an activation between them (overall stride 4)."""

    def __init__(self, in_channels: int, out_channels: int, norm_cfg: Dict, act_cfg: Dict,
                 deploy: bool = False) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            _conv_or_convnorm(in_channels, out_channels // 2, 3, 2, 1, norm_cfg, deploy),
            build_activation_layer(act_cfg),
            _conv_or_convnorm(out_channels // 2, out_channels, 3, 2, 1, norm_cfg, deploy))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)

    def switch_to_deploy(self) -> None:
        reparameterize(self.stem)


class RepNeXtStage(nn.Module):
    """Optional downsample followed by MetaNeXt blocks (``downsample`` is absent in the first stage)."""

    def __init__(self, downsample: Optional[nn.Module], blocks: List[nn.Module]) -> None:
        super().__init__()
        self.downsample = downsample if downsample is not None else nn.Identity()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


@MODELS.register_module()
@register_plain_alias
class RepNeXt(RepNeXtKeys, RepBackbone):
    """RepNeXt backbone (`arXiv 2406.16004 <https://arxiv.org/abs/2406.16004>`_).

    Args:
        arch: ``'m0'`` ... ``'m5'``, the single-branch "E" variants ``'m0e'``, ``'m1e'``, ``'m2e'``, or a
            dict with ``embed_dims`` (each stage twice the previous, each divisible by 4), ``depths``
            (same length), optionally ``mlp_ratio`` (default 2) and ``token_mixer``: ``'rep'`` (default,
            re-parameterised branch groups), ``'single'`` (the "E" variants: every block mixes with ONE
            depthwise 11 x 11 conv over all channels, every downsample with ONE depthwise 7 x 7 stride-2
            conv over the copied input) or ``'chunk'`` (upstream README's ChunkConv: identity and plain
            depthwise 3 x 3 / 7 x 7 / 11 x 11 on the four chunks, plain stride-2 3 x 3 + 7 x 7 CopyConv).
        in_channels: Input image channels. Defaults to 3.
        out_indices: Stages whose outputs are returned (strides 4, 8, 16, 32); negative values count
            from the end. Defaults to ``(0, 1, 2, 3)``.
        frozen_stages: Freeze the stem (``>= 0``) and the first ``frozen_stages`` stages (parameters
            and norm statistics). ``-1`` freezes nothing. Defaults to -1.
        norm_eval: Keep every BatchNorm in eval mode during training. Defaults to False.
        with_cp: Gradient-checkpoint every block and downsample (``use_reentrant=False``).
        norm_cfg: Norm of the ConvNorms and of the block norms. Defaults to ``dict(type='BN')``;
            merging needs a BatchNorm type.
        act_cfg: Activation. Defaults to ``dict(type='GELU')``.
        drop_path_rate: Stochastic depth, linear over the MetaNeXt blocks. Upstream has none;
            the default 0 keeps parity.
        deploy: Build the merged (inference) form directly, e.g. to load merged checkpoints.
        single_branch: The deploy form folds every ChunkConv into ONE 11 x 11 depthwise conv through
            :mod:`mmlk.ops` (identity as a centred 1, exact border term for ``conv_l``'s inner bias) and
            every CopyConv into one 7 x 7 stride-2 depthwise conv on the copied input. Used by
            ``deploy=True`` and as the default of :meth:`switch_to_deploy`. Defaults to False.
        fold_block_norm: In the deploy form also fold the block norms (exact). ``False`` reproduces the
            upstream fused layout and parameter count. Defaults to True.
        merge_branches: Compute each depthwise branch group of the training form as one conv with the
            summed kernel (same values and gradients as branch by branch, faster). Defaults to True.
        lk_impl: Implementation passed to :class:`mmlk.ops.LargeKernelDWConv2d` for depthwise
            convolutions with a side of 7 or more. Defaults to ``'auto'``.
        init_cfg: ``dict(type='Pretrained', checkpoint=..., prefix=...)`` loads through
            :func:`mmlk.models.weights.load_pretrained` (strict); other configs go to mmengine.
    """

    family = 'repnext'
    display_name = 'RepNeXt'
    #: the release formats of this family (``format`` in checkpoints.yaml; see mmlk.models.weights.keys)
    formats = {'repnext-official': 'suous/RepNeXt release: training checkpoint with the state dict under "model"',
               'repnext-torchscript': 'suous/RepNeXt fused TorchScript archive (tensors read without running its '
                                      'code)'}
    #: Upstream's fused files keep every block / downsample BatchNorm; mmlk's default deploy form folds them
    #: into the neighbouring convs. The loader builds a twin in upstream's layout, loads the file strictly and
    #: folds (mmlk.models.weights.loading).
    #: keys mmlk's classification configs keep in the mm head (RepNeXtClsHead: ``head`` and ``head_dist``)
    mm_head_prefixes = ('head.', )
    merged_layouts = (dict(name='upstream fused layout, block norms folded', build=dict(fold_block_norm=False),
                           keys=r'stages\.\d+\.(blocks\.\d+|downsample)\.norm\.', finish='fold_block_norms',
                           hint='Note: upstream\'s fused files keep the block norms; build RepNeXt with deploy=True, '
                                'fold_block_norm=False to load them, or load the training-form release (it merges '
                                'on the fly into any deploy form).'), )
    num_stages = 4
    deploy_options = ('single_branch', )

    arch_settings: Dict[str, Dict] = {
        'm0': dict(embed_dims=[40, 80, 160, 320], depths=[2, 2, 9, 1], mlp_ratio=2),
        'm1': dict(embed_dims=[48, 96, 192, 384], depths=[3, 3, 15, 2], mlp_ratio=2),
        'm2': dict(embed_dims=[56, 112, 224, 448], depths=[3, 3, 15, 2], mlp_ratio=2),
        'm3': dict(embed_dims=[64, 128, 256, 512], depths=[3, 3, 13, 2], mlp_ratio=2),
        'm4': dict(embed_dims=[64, 128, 256, 512], depths=[5, 5, 25, 4], mlp_ratio=2),
        'm5': dict(embed_dims=[80, 160, 320, 640], depths=[7, 7, 35, 2], mlp_ratio=2),
        # "E": the single-branch equivalent form, trained as such (upstream README, StarNet-recipe and
        # compact-model tables): one depthwise 11 x 11 per block, one 7 x 7 stride-2 per downsample. Its
        # CIFAR-100 log counts 2,298,620 training parameters for M0E, which only this form gives.
        'm0e': dict(embed_dims=[40, 80, 160, 320], depths=[2, 2, 9, 1], mlp_ratio=2, token_mixer='single'),
        'm1e': dict(embed_dims=[48, 96, 192, 384], depths=[3, 3, 15, 2], mlp_ratio=2, token_mixer='single'),
        'm2e': dict(embed_dims=[56, 112, 224, 448], depths=[3, 3, 15, 2], mlp_ratio=2, token_mixer='single'),
    }

    def __init__(self,
                 arch: Union[str, Dict] = 'm3',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 norm_cfg: Optional[Dict] = None,
                 act_cfg: Optional[Dict] = None,
                 drop_path_rate: float = 0.,
                 deploy: bool = False,
                 fold_block_norm: bool = True,
                 merge_branches: bool = True,
                 lk_impl: str = 'auto',
                 init_cfg: Optional[Union[Dict, List[Dict]]] = None,
                 single_branch: bool = False) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch = self._parse_arch(arch)
        self.arch_name = arch.lower() if isinstance(arch, str) else None
        embed_dims, depths = self.arch['embed_dims'], self.arch['depths']
        mlp_ratio = self.arch['mlp_ratio']
        norm_cfg = norm_cfg or dict(type='BN')
        act_cfg = act_cfg or dict(type='GELU')
        self._setup_common(out_indices, frozen_stages, norm_eval, drop_path_rate)
        self.deploy = deploy
        self.fold_block_norm = fold_block_norm
        self.embed_dims = list(embed_dims)
        self.out_channels = [embed_dims[i] for i in self.out_indices]

        self.single_branch = bool(single_branch)
        common = dict(norm_cfg=norm_cfg, act_cfg=act_cfg, deploy=deploy, fold_block_norm=fold_block_norm,
                      merge_branches=merge_branches, lk_impl=lk_impl, with_cp=with_cp,
                      token_mixer=self.arch['token_mixer'], single_branch=self.single_branch)
        self.stem = RepNeXtStem(in_channels, embed_dims[0], norm_cfg, act_cfg, deploy)
        dpr = self.drop_path_rates(drop_path_rate, sum(depths))
        stages = []
        for i, (dim, depth) in enumerate(zip(embed_dims, depths)):
            downsample = Downsample(embed_dims[i - 1], mlp_ratio, **common) if i > 0 else None
            first = sum(depths[:i])
            blocks = [MetaNeXtBlock(dim, mlp_ratio, drop_path=dpr[first + j], **common) for j in range(depth)]
            stages.append(RepNeXtStage(downsample, blocks))
        self.stages = nn.Sequential(*stages)
        self.with_cp = with_cp
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch: Union[str, Dict]) -> Dict:
        if isinstance(arch, str):
            key = arch.lower()
            if key not in cls.arch_settings:
                raise ValueError(f'unknown RepNeXt arch {arch!r}; choose one of {sorted(cls.arch_settings)} '
                                 'or pass a dict with embed_dims, depths and optionally mlp_ratio')
            return {'token_mixer': 'rep', **copy.deepcopy(cls.arch_settings[key])}
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or a dict, got {type(arch).__name__}')
        unknown = set(arch) - {'embed_dims', 'depths', 'mlp_ratio', 'token_mixer'}
        missing = {'embed_dims', 'depths'} - set(arch)
        if unknown or missing:
            raise ValueError(f'arch dict needs keys embed_dims and depths (optional mlp_ratio); '
                             f'missing {sorted(missing)}, unknown {sorted(unknown)}')
        dims, depths = list(arch['embed_dims']), list(arch['depths'])
        mlp_ratio = arch.get('mlp_ratio', 2)
        if not dims or len(dims) != len(depths):
            raise ValueError(f'embed_dims {dims} and depths {depths} must be non-empty and equally long')
        if any(int(d) != d or d < 1 for d in depths):
            raise ValueError(f'depths must be positive integers, got {depths}')
        if any(isinstance(d, bool) or not isinstance(d, int) or d < 4 or d % 4 for d in dims):
            raise ValueError(f'every embed dim must be a positive int divisible by 4 (ChunkConv splits four ways), '
                             f'got {dims}')
        if any(b != 2 * a for a, b in zip(dims, dims[1:])):
            raise ValueError(f'each embed dim must be twice the previous one (the downsample concatenates two '
                             f'depthwise groups), got {dims}')
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) or not mlp_ratio > 0:
            raise ValueError(f'mlp_ratio must be a positive number, got {mlp_ratio!r}')
        if int(dims[0] * mlp_ratio) < 1:
            # The narrowest channel mixer would get a zero-width hidden layer.
            raise ValueError(f'mlp_ratio {mlp_ratio} gives embed dim {dims[0]} a hidden width of '
                             f'{int(dims[0] * mlp_ratio)}; use mlp_ratio >= {1 / dims[0]:.3g}')
        mixer = arch.get('token_mixer', 'rep')
        if mixer not in TOKEN_MIXERS:
            raise ValueError(f'arch token_mixer must be one of {TOKEN_MIXERS} (re-parameterised branches, one '
                             f'single-branch conv as the "E" variants, plain chunk convs), got {mixer!r}')
        return dict(embed_dims=dims, depths=[int(d) for d in depths], mlp_ratio=mlp_ratio, token_mixer=mixer)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.forward_stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [self.stem] + [self.stages[i] for i in range(self.frozen_stages)]

    def switch_to_deploy(self, single_branch: Optional[bool] = None) -> None:
        """Merge the whole backbone in place for inference; idempotent. Uses running BN statistics.

        Args:
            single_branch: Also fold every token mixer into one depthwise conv (see the class
                ``single_branch`` argument, the default when None). A merged model can still be
                switched to the single-branch form later; the reverse is not possible.
        """
        super().switch_to_deploy(single_branch=single_branch)

    def _switch_to_deploy(self, single_branch: bool) -> None:
        single = bool(single_branch)
        if self.deploy and (self.single_branch or not single):
            return
        if not self.deploy:
            self.stem.switch_to_deploy()
        for unit in self._units():
            unit.switch_to_deploy(single_branch=single)
        self.deploy = True
        self.single_branch = single
        self.build_kwargs['single_branch'] = single

    def _units(self) -> List['_RepNeXtUnit']:
        return [unit for stage in self.stages for unit in [stage.downsample, *stage.blocks]
                if isinstance(unit, _RepNeXtUnit)]

    def fold_block_norms(self) -> None:
        """Fold the kept block / downsample norms of a merged model (``fold_block_norm=False``, upstream's
        fused layout) into the neighbouring convs: the default deploy form. Exact; idempotent."""
        if not self.deploy:
            raise RuntimeError('fold_block_norms needs the merged form: call switch_to_deploy() first')
        for unit in self._units():
            if not unit.fold_block_norm:
                unit.fold_norm()
        self.fold_block_norm = True
        self.build_kwargs['fold_block_norm'] = True

    # ------------------------------------------------------------------ layer-wise lr decay
    # Layer ids follow ConvNeXt's scheme (which RepNeXt's macro design descends from): stage 2 in
    # ``min(9, depth)`` nearly equal groups; a stage's downsample goes with its first group.
    @classmethod
    def _stage2_groups(cls, depth: int) -> int:
        return max(1, min(9, depth))

    @classmethod
    def _stage2_group(cls, block: Optional[int], depth: int, groups: int) -> int:
        return 0 if block is None else block * groups // depth
