"""UniRepLKNet: large kernels re-parameterised from parallel dilated small kernels.

Ding et al., "UniRepLKNet: A Universal Perception Large-Kernel ConvNet for Audio, Video, Point Cloud,
Time-Series and Image Recognition", CVPR 2024 (arXiv:2311.15599). One implementation serves mmpretrain, mmseg,
mmdet (``type='mmlk.UniRepLKNet'``) and timm (``unireplknet_a`` ... ``unireplknet_xl``,
:mod:`mmlk.models.unireplknet.timm`).

Module names reproduce the official key layout (AILab-CVC/UniRepLKNet ``unireplknet.py``), so released files
load strictly with no renaming: ``downsample_layers.i`` (the stem is ``downsample_layers.0``), ``stages.i.j``
blocks (``dwconv`` [a :class:`DilatedReparamConv` for kernels >= 7: ``lk_origin``, ``origin_bn``,
``dil_conv_k{k}_{r}``, ``dil_bn_k{k}_{r}``], ``norm``, ``se.down/up``, ``pwconv1.1``, ``act.1`` (GRN),
``pwconv2.0`` / ``pwconv2.2`` (BN), ``gamma``), per-stage output norms ``norm0`` .. ``norm3`` (downstream) and
the classifier's ``norm`` + ``head``. The deploy form (``deploy=True`` or :meth:`UniRepLKNet.switch_to_deploy`)
has the official merged keys: ``dwconv[.lk_origin].weight/bias``, ``act.1.gamma``, ``pwconv2.0.weight/bias``.
"""
import copy
import math
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath

from mmlk.registry import MODELS, register_plain_alias
from ..utils.conv import conv_like, make_conv
from ..utils.reparam import dilate_kernel, fuse_conv_bn, pad_kernel, require_batchnorm
from ..base import RepBackbone, checkpoint_with_bn_guard
from .keys import UniRepLKNetKeys

__all__ = ['UniRepLKNet', 'UniRepLKNetBlock', 'DilatedReparamConv', 'GRN', 'SEBlock', 'LayerNorm2d',
           'DILATED_BRANCHES', 'default_kernel_sizes']

#: The Dilated Reparam Block's parallel branches, ``large kernel -> [(small kernel, dilation), ...]``: the
#: official table (the paper's defaults, "not tuned carefully"). Each branch spans ``r * (k - 1) + 1`` taps.
DILATED_BRANCHES: Dict[int, Tuple[Tuple[int, int], ...]] = {
    17: ((5, 1), (9, 2), (3, 4), (3, 5), (3, 7)),
    15: ((5, 1), (7, 2), (3, 3), (3, 5), (3, 7)),
    13: ((5, 1), (7, 2), (3, 3), (3, 4), (3, 5)),
    11: ((5, 1), (5, 2), (3, 3), (3, 4), (3, 5)),
    9: ((5, 1), (5, 2), (3, 3), (3, 4)),
    7: ((5, 1), (3, 2), (3, 3)),
    5: ((3, 1), (3, 2)),
}


def default_kernel_sizes(depths: Sequence[int]) -> Optional[List[List[int]]]:
    """The official per-block kernel sizes for the published depths, or None for other depths.

    Stages 0 and 1 use 3 and 13 everywhere, stage 3 13; stage 2 is all 13 for (2, 2, 6, 2) and (2, 2, 8, 2),
    alternates 13, 3 for (3, 3, 18, 3) and repeats 13, 3, 3 for (3, 3, 27, 3).
    """
    patterns = {(2, 2, 6, 2): (13, ), (2, 2, 8, 2): (13, ), (3, 3, 18, 3): (13, 3), (3, 3, 27, 3): (13, 3, 3)}
    pattern = patterns.get(tuple(depths))
    if pattern is None:
        return None
    d = list(depths)
    return [[3] * d[0], [13] * d[1], [pattern[j % len(pattern)] for j in range(d[2])], [13] * d[3]]


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (ConvNeXt's ``channels_first`` LayerNorm, eps 1e-6).

    The statistics are computed in float32 (bf16 / fp16 autocast included) and the result is cast back.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1).float(), self.normalized_shape,
                         self.weight.float(), self.bias.float(), self.eps)
        return y.permute(0, 3, 1, 2).to(x.dtype)


class GRN(nn.Module):
    """Global Response Normalization on NHWC maps (ConvNeXt V2, Woo et al., CVPR 2023).

    ``(gamma * N(x) + 1) * x + beta`` with ``N(x) = G(x) / (mean_c G(x) + 1e-6)`` and ``G(x)`` the L2 norm of
    each channel over H and W. ``G`` is computed in float32: over a large map the sum of squares overflows
    fp16 (and loses most digits in bf16). The deploy form has no ``beta`` (it is projected into the next
    linear's bias).

    Args:
        channels: Number of channels (the last dimension).
        use_bias: Whether ``beta`` exists. Defaults to True.
    """

    def __init__(self, channels: int, use_bias: bool = True) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, channels))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, channels)) if use_bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.linalg.vector_norm(x.float(), ord=2, dim=(1, 2), keepdim=True)
        n = (g / (g.mean(dim=-1, keepdim=True) + 1e-6)).to(x.dtype)
        out = (self.gamma.to(x.dtype) * n + 1) * x
        beta = self.beta
        if beta is not None:
            out = out + beta.to(x.dtype)
        return out


class SEBlock(nn.Module):
    """Squeeze-and-excitation (Hu et al., CVPR 2018) on NCHW maps: ``x * sigmoid(up(relu(down(avgpool(x)))))``.

    Args:
        channels: Input / output channels.
        hidden: Channels of the bottleneck (``channels // 4`` in UniRepLKNet).
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(channels, hidden, 1, bias=True)
        self.up = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.up(F.relu(self.down(s))))


class _ToChannelsLast(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


class _ToChannelsFirst(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)


class DilatedReparamConv(nn.ModuleDict):
    """The Dilated Reparam Block: a depthwise ``K x K`` conv plus parallel dilated small depthwise convs.

    Training form: ``origin_bn(lk_origin(x)) + sum_b dil_bn_b(dil_conv_b(x))`` with the branches of
    :data:`DILATED_BRANCHES`. Each branch equals a dense kernel of ``r * (k - 1) + 1`` taps, so the whole sum is
    one biased ``K x K`` depthwise conv (:meth:`equivalent_kernel_bias`); :meth:`switch_to_deploy` replaces
    ``lk_origin`` by it (through :mod:`mmlk.ops`) and drops the branches.

    A ``ModuleDict`` so the official flat names (``dil_conv_k5_1``, ...) are the children and ``forward`` can walk
    them under TorchScript (which cannot look up attributes by computed names).

    Args:
        channels: Channels (depthwise).
        kernel_size: ``K``, a key of :data:`DILATED_BRANCHES`.
        deploy: Build the merged form directly. Defaults to False.
        norm_cfg: mmcv norm config of the BNs. Defaults to ``dict(type='BN')``.
        lk_impl: Route of the large-kernel op (``'auto'``, ``'torch'``, ...). Defaults to ``'auto'``.
    """

    def __init__(self, channels: int, kernel_size: int, deploy: bool = False, norm_cfg: Optional[dict] = None,
                 lk_impl: str = 'auto') -> None:
        super().__init__()
        if kernel_size not in DILATED_BRANCHES:
            raise ValueError(f'the Dilated Reparam Block has branch tables for kernel sizes '
                             f'{sorted(DILATED_BRANCHES)}, got {kernel_size}')
        norm_cfg = norm_cfg or dict(type='BN')
        self.kernel_size = kernel_size
        self.branches = DILATED_BRANCHES[kernel_size]
        self.deploy = deploy
        self['lk_origin'] = make_conv(channels, channels, kernel_size, groups=channels, bias=deploy, lk_impl=lk_impl)
        if not deploy:
            self['origin_bn'] = build_norm_layer(norm_cfg, channels)[1]
            for k, r in self.branches:
                self[f'dil_conv_k{k}_{r}'] = nn.Conv2d(channels, channels, k, padding=(r * (k - 1) + 1) // 2,
                                                       dilation=r, groups=channels, bias=False)
                self[f'dil_bn_k{k}_{r}'] = build_norm_layer(norm_cfg, channels)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lk_origin(x)
        y = x
        for name, module in self.items():  # insertion order: each dil_bn follows its dil_conv
            if name == 'origin_bn':
                out = module(out)
            elif name.startswith('dil_conv_'):
                y = module(x)
            elif name.startswith('dil_bn_'):
                out = out + module(y)
        return out

    def equivalent_kernel_bias(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """The ``(C, 1, K, K)`` kernel and ``(C,)`` bias of the single conv equal to this block (eval mode)."""
        if self.deploy:
            return self.lk_origin.weight, self.lk_origin.bias
        size = (self.kernel_size, self.kernel_size)
        weight, bias = fuse_conv_bn(self.lk_origin.weight, None, require_batchnorm(self['origin_bn'], 'lk_origin'))
        for k, r in self.branches:
            bn = require_batchnorm(self[f'dil_bn_k{k}_{r}'], f'dil_conv_k{k}_{r}')
            w, b = fuse_conv_bn(self[f'dil_conv_k{k}_{r}'].weight, None, bn)
            weight = weight + pad_kernel(dilate_kernel(w, r), size)
            bias = bias + b
        return weight, bias

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Merge every branch into one biased ``lk_origin`` in place (idempotent)."""
        if self.deploy:
            return
        weight, bias = self.equivalent_kernel_bias()
        self['lk_origin'] = conv_like(self.lk_origin, weight, bias)
        for name in [n for n in self.keys() if n != 'lk_origin']:
            del self[name]
        self.deploy = True


class UniRepLKNetBlock(nn.Module):
    """UniRepLKNet block: ``x + drop_path(gamma * BN(pwconv2(GRN(GELU(pwconv1(SE(BN(dwconv(x)))))))))``.

    ``dwconv`` is a :class:`DilatedReparamConv` for kernels >= 7, a plain depthwise conv for 3 and 5, and the
    identity for 0 (then there is no BN after it). The pointwise convs are Linears on NHWC maps (``pwconv1``
    widens by ``ffn_ratio``). :meth:`switch_to_deploy` merges, as the official ``reparameterize`` does: the
    dilated branches and the BN into ``dwconv``, GRN's ``beta`` (projected through ``pwconv2``), ``pwconv2``'s BN
    and the layer scale ``gamma`` into a biased ``pwconv2`` Linear.

    Args:
        channels: Channels.
        kernel_size: 0, 3, 5 or a key of :data:`DILATED_BRANCHES`.
        drop_path: Stochastic-depth rate. Defaults to 0.
        layer_scale_init_value: Initial layer scale; ``None`` or 0 for none. Defaults to 1e-6.
        deploy: Build the merged form. Defaults to False.
        norm_cfg: mmcv norm config of the BNs. Defaults to ``dict(type='BN')``.
        with_cp: Gradient checkpointing of the block (BN statistics updated once). Defaults to False.
        lk_impl: Route of the large-kernel op. Defaults to ``'auto'``.
        ffn_ratio: Width of ``pwconv1`` over ``channels``. Defaults to 4.
    """

    def __init__(self, channels: int, kernel_size: int, drop_path: float = 0.,
                 layer_scale_init_value: Optional[float] = 1e-6, deploy: bool = False,
                 norm_cfg: Optional[dict] = None, with_cp: bool = False, lk_impl: str = 'auto',
                 ffn_ratio: float = 4) -> None:
        super().__init__()
        norm_cfg = norm_cfg or dict(type='BN')
        self.deploy = deploy
        self.with_cp = with_cp
        if kernel_size == 0:
            self.dwconv = nn.Identity()
        elif kernel_size >= 7:
            self.dwconv = DilatedReparamConv(channels, kernel_size, deploy, norm_cfg, lk_impl)
        elif kernel_size in (3, 5):
            self.dwconv = make_conv(channels, channels, kernel_size, groups=channels, bias=deploy, lk_impl=lk_impl)
        else:
            raise ValueError(f'UniRepLKNet kernel sizes are 0 (identity), 3, 5 or one of {sorted(DILATED_BRANCHES)} '
                             f'(Dilated Reparam Block), got {kernel_size}')
        self.norm = nn.Identity() if deploy or kernel_size == 0 else build_norm_layer(norm_cfg, channels)[1]
        self.se = SEBlock(channels, channels // 4)
        hidden = int(ffn_ratio * channels)
        self.pwconv1 = nn.Sequential(_ToChannelsLast(), nn.Linear(channels, hidden))
        self.act = nn.Sequential(nn.GELU(), GRN(hidden, use_bias=not deploy))
        if deploy:
            self.pwconv2 = nn.Sequential(nn.Linear(hidden, channels), _ToChannelsFirst())
        else:
            self.pwconv2 = nn.Sequential(nn.Linear(hidden, channels, bias=False), _ToChannelsFirst(),
                                         build_norm_layer(norm_cfg, channels)[1])
        scaled = not deploy and layer_scale_init_value is not None and layer_scale_init_value > 0
        self.gamma = nn.Parameter(torch.full((channels, ), float(layer_scale_init_value))) if scaled else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pwconv2(self.act(self.pwconv1(self.se(self.norm(self.dwconv(x))))))
        gamma = self.gamma
        if gamma is not None:
            y = y * gamma.view(1, -1, 1, 1)
        return self.drop_path(y)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and self.with_cp and torch.is_grad_enabled():
            return checkpoint_with_bn_guard(self._forward, x, self)
        return self._forward(x)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Merge in place with the running BN statistics (idempotent); eval outputs are unchanged."""
        if self.deploy:
            return
        if isinstance(self.dwconv, DilatedReparamConv):
            self.dwconv.switch_to_deploy()
            conv = self.dwconv.lk_origin
        else:
            conv = self.dwconv
        if isinstance(conv, nn.Conv2d) and not isinstance(self.norm, nn.Identity):
            weight, bias = fuse_conv_bn(conv.weight, conv.bias, require_batchnorm(self.norm, 'a block dwconv'))
            merged = conv_like(conv, weight, bias)
            if isinstance(self.dwconv, DilatedReparamConv):
                self.dwconv['lk_origin'] = merged
            else:
                self.dwconv = merged
            self.norm = nn.Identity()
        # pwconv2(GRN(x)) = W (GRN0(x) + beta): beta becomes W @ beta; then BN, then the layer scale.
        grn = self.act[1]
        linear, bn = self.pwconv2[0], require_batchnorm(self.pwconv2[2], 'pwconv2')
        bias = linear.weight @ grn.beta.reshape(-1)
        weight, bias = fuse_conv_bn(linear.weight, bias, bn)
        if self.gamma is not None:
            weight, bias = weight * self.gamma.reshape(-1, 1), bias * self.gamma
        merged = nn.Linear(linear.in_features, linear.out_features).to(weight)
        merged.weight.copy_(weight)
        merged.bias.copy_(bias)
        self.pwconv2 = nn.Sequential(merged, self.pwconv2[1])
        grn.beta = None
        self.gamma = None
        self.deploy = True


def _check_arch(arch: Union[str, dict], choices: Dict[str, dict]) -> dict:
    """The arch dict (``depths``, ``dims``, ``kernel_sizes``) of a variant name or a user dict."""
    if isinstance(arch, str):
        key = arch.lower()
        if key not in choices:
            raise ValueError(f'unknown UniRepLKNet arch {arch!r}; choose one of {list(choices)} or pass a dict '
                             'with depths, dims and optionally kernel_sizes')
        return copy.deepcopy(choices[key])
    if not isinstance(arch, dict):
        raise TypeError(f'arch must be a str or a dict, got {type(arch).__name__}')
    unknown, missing = set(arch) - {'depths', 'dims', 'kernel_sizes'}, {'depths', 'dims'} - set(arch)
    if unknown or missing:
        raise ValueError(f'UniRepLKNet arch dict takes depths, dims and optionally kernel_sizes; '
                         f'missing {sorted(missing)}, unknown {sorted(unknown)}')
    depths, dims = list(arch['depths']), list(arch['dims'])
    for name, value in (('depths', depths), ('dims', dims)):
        if len(value) != 4 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
            raise ValueError(f'UniRepLKNet arch {name} must be 4 positive ints (one per stage), got {value}')
    if dims[0] % 2 or min(dims) < 4:
        raise ValueError(f'UniRepLKNet dims must be >= 4 (the SE block squeezes by 4) and dims[0] even (the stem '
                         f'halves it), got {dims}')
    kernel_sizes = arch.get('kernel_sizes')
    if kernel_sizes is None:
        kernel_sizes = default_kernel_sizes(depths)
        if kernel_sizes is None:
            raise ValueError(f'no default kernel sizes for depths {tuple(depths)} (defaults exist for (2, 2, 6, 2), '
                             '(2, 2, 8, 2), (3, 3, 18, 3), (3, 3, 27, 3)); pass kernel_sizes, one list per stage '
                             'with one size per block')
    kernel_sizes = [list(k) for k in kernel_sizes]
    valid = {0, 3, 5, *DILATED_BRANCHES}
    if len(kernel_sizes) != 4 or [len(k) for k in kernel_sizes] != depths:
        raise ValueError(f'kernel_sizes must give one size per block ({depths} blocks per stage), got '
                         f'{[len(k) for k in kernel_sizes]} sizes per stage')
    bad = sorted({k for stage in kernel_sizes for k in stage if k not in valid})
    if bad:
        raise ValueError(f'UniRepLKNet kernel sizes must be in {sorted(valid)} (0 is the identity), got {bad}')
    return dict(depths=depths, dims=dims, kernel_sizes=kernel_sizes)


def _arch(depths: Sequence[int], dims: Sequence[int]) -> dict:
    return dict(depths=list(depths), dims=list(dims), kernel_sizes=default_kernel_sizes(depths))


@MODELS.register_module()
@register_plain_alias
class UniRepLKNet(UniRepLKNetKeys, RepBackbone):
    """UniRepLKNet backbone (Ding et al., CVPR 2024, arXiv:2311.15599) for mmpretrain, mmseg and mmdet.

    Four stages at strides 4 to 32 of ``UniRepLKNetBlock`` (13x13 Dilated Reparam Blocks interleaved with
    3x3 blocks per the official tables), each stage opened by ``downsample_layers.i`` (the stem, two stride-2
    3x3 convs with LayerNorm and GELU, for ``i = 0``; a stride-2 3x3 conv and LayerNorm after). Returns the
    ``out_indices`` maps, each through its LayerNorm ``norm{i}`` (the official downstream outputs), and with
    ``num_classes > 0`` the official classifier's logits (global average pool, LayerNorm ``norm``, ``head``) as
    the last output.

    Args:
        arch: ``'a'``, ``'f'``, ``'p'``, ``'n'``, ``'t'``, ``'s'``, ``'b'``, ``'l'``, ``'xl'`` or a dict with
            ``depths`` and ``dims`` (4 ints each) and optionally ``kernel_sizes`` (one list per stage, one
            size per block: 0 identity, 3 / 5 plain, >= 7 dilated reparam; default: the official tables).
            Defaults to ``'t'``.
        in_channels: Input channels. Defaults to 3.
        out_indices: Stages whose maps are returned. Defaults to ``(0, 1, 2, 3)``.
        num_classes: Classes of the official classifier (0: none). Defaults to 0.
        drop_path_rate: Stochastic depth, linear over the blocks. Defaults to 0.
        layer_scale_init_value: Initial layer scale (None or 0: none). Defaults to 1e-6.
        frozen_stages: Freeze the stem and the first stages (-1: nothing). Defaults to -1.
        norm_eval: Keep the BNs in eval mode while training. Defaults to False.
        with_cp: Gradient checkpointing per block (BN statistics updated once). Defaults to False.
        norm_cfg: mmcv norm config of the BNs (upstream downstream models use SyncBN). Defaults to BN.
        deploy: Build the merged form (official deploy keys). Defaults to False.
        lk_impl: Route of :mod:`mmlk.ops` for the large depthwise kernels. Defaults to ``'auto'``.
        init_cfg: mmengine init config; ``dict(type='Pretrained', checkpoint=...)`` goes through
            :func:`mmlk.models.weights.load_pretrained`. Defaults to None.
    """

    arch_settings: Dict[str, dict] = {
        'a': _arch((2, 2, 6, 2), (40, 80, 160, 320)),
        'f': _arch((2, 2, 6, 2), (48, 96, 192, 384)),
        'p': _arch((2, 2, 6, 2), (64, 128, 256, 512)),
        'n': _arch((2, 2, 8, 2), (80, 160, 320, 640)),
        't': _arch((3, 3, 18, 3), (80, 160, 320, 640)),
        's': _arch((3, 3, 27, 3), (96, 192, 384, 768)),
        'b': _arch((3, 3, 27, 3), (128, 256, 512, 1024)),
        'l': _arch((3, 3, 27, 3), (192, 384, 768, 1536)),
        'xl': _arch((3, 3, 27, 3), (256, 512, 1024, 2048)),
    }
    family = 'unireplknet'
    display_name = 'UniRepLKNet'
    #: the release formats of this family (``format`` in checkpoints.yaml; see mmlk.models.weights.keys)
    formats = {'unireplknet-official': 'AILab-CVC/UniRepLKNet release (Hugging Face DingXiaoH/UniRepLKNet): flat '
                                       'state dict or under "model"'}
    num_stages = 4
    output_norm_pattern = r'(^|\.)norm[0-3]\.'

    def __init__(self,
                 arch: Union[str, dict] = 't',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 num_classes: int = 0,
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: Optional[float] = 1e-6,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 norm_cfg: Optional[dict] = None,
                 deploy: bool = False,
                 lk_impl: str = 'auto',
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch = _check_arch(arch, self.arch_settings)
        self.arch_name = arch.lower() if isinstance(arch, str) else None
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f'num_classes must be an int >= 0, got {num_classes!r}')
        norm_cfg = copy.deepcopy(norm_cfg) if norm_cfg is not None else dict(type='BN')
        if not isinstance(norm_cfg, dict) or 'type' not in norm_cfg:
            raise ValueError(f'norm_cfg must be an mmcv norm config dict with a "type", got {norm_cfg!r}')
        self._setup_common(out_indices, frozen_stages, norm_eval, drop_path_rate, has_classifier=num_classes > 0)
        self.num_classes = num_classes
        self.deploy = bool(deploy)
        self.lk_impl = lk_impl
        dims, depths = self.arch['dims'], self.arch['depths']
        self.out_channels = [dims[i] for i in self.out_indices]

        self.downsample_layers = nn.ModuleList([nn.Sequential(
            nn.Conv2d(in_channels, dims[0] // 2, 3, stride=2, padding=1), LayerNorm2d(dims[0] // 2), nn.GELU(),
            nn.Conv2d(dims[0] // 2, dims[0], 3, stride=2, padding=1), LayerNorm2d(dims[0]))])
        for i in range(1, self.num_stages):
            self.downsample_layers.append(nn.Sequential(
                nn.Conv2d(dims[i - 1], dims[i], 3, stride=2, padding=1), LayerNorm2d(dims[i])))
        rates = self.drop_path_rates(drop_path_rate, sum(depths))
        self.stages = nn.ModuleList()
        for i in range(self.num_stages):
            first = sum(depths[:i])
            self.stages.append(nn.Sequential(*[
                UniRepLKNetBlock(dims[i], self.arch['kernel_sizes'][i][j], rates[first + j], layer_scale_init_value,
                                 self.deploy, norm_cfg, with_cp, lk_impl) for j in range(depths[i])]))
        for i in self.out_indices:
            self.add_module(f'norm{i}', LayerNorm2d(dims[i]))
        if num_classes > 0:
            self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
            self.head = nn.Linear(dims[-1], num_classes)
        self.with_cp = with_cp
        self._freeze_stages()

    @property
    def has_classifier(self) -> bool:
        return self.num_classes > 0

    # ------------------------------------------------------------------ forward
    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample_layers[0](x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The official classifier on the raw last-stage map: ``head(norm(mean_hw(x)))``."""
        if not self.has_classifier:
            raise RuntimeError('this UniRepLKNet has no classifier; build it with num_classes > 0')
        x = self.norm(x.mean(dim=(2, 3)))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        outs = []
        for i, (down, stage) in enumerate(zip(self.downsample_layers, self.stages)):
            x = stage(down(x))
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(x))
        if self.has_classifier:
            outs.append(self.forward_head(x))
        return tuple(outs)

    def _frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        # frozen_stages=k freezes the stem (downsample_layers.0) and stages 0..k-1 with their downsamples
        count = max(self.frozen_stages, 1)
        return [self.downsample_layers[i] for i in range(count)] + [self.stages[i] for i in range(self.frozen_stages)]

    # ------------------------------------------------------------------ deployment
    def _switch_to_deploy(self) -> None:
        for stage in self.stages:
            for block in stage:
                block.switch_to_deploy()
        self.deploy = True

    # ------------------------------------------------------------------ checkpoints
    # ------------------------------------------------------------------ layer-wise lr decay
    @classmethod
    def layer_ids(cls, names: List[str], decay_type: str = 'layer_wise') -> Tuple[Dict[str, int], int]:
        """Layer ids after ConvNeXt's scheme, which UniRepLKNet's fine-tuning code uses (BEiT-style decay).

        ``layer_wise``: the stem (``downsample_layers.0``) 0, stages 0 and 1 (with their downsamples) 1 and 2,
        stage 2 in groups of three blocks numbered from 3 (its downsample with the first group), the last stage
        and its downsample ``L = 3 + ceil(depth_2 / 3)`` (12 for the 27-block stage of S / B / L / XL, as
        upstream). ``stage_wise``: the stem 0 and stage ``s`` with its downsample ``s + 1``. The output norms
        ``norm0..3`` and the classifier (``norm``, ``head``) are outside: ``L + 1``.
        """
        depth2 = 1
        for name in names:
            m = re.match(r'^stages\.2\.(\d+)\.', name)
            if m:
                depth2 = max(depth2, int(m.group(1)) + 1)
        stage_wise = decay_type == 'stage_wise'
        num_layers = 4 if stage_wise else 3 + math.ceil(depth2 / 3)
        ids: Dict[str, int] = {}
        for name in names:
            parts = name.split('.')
            if parts[0] in ('downsample_layers', 'stages') and len(parts) > 2:
                stage = int(parts[1])
                if parts[0] == 'downsample_layers' and stage == 0:
                    layer = 0
                elif stage_wise or stage < 2:
                    layer = stage + 1
                elif stage == 2:
                    layer = 3 + (int(parts[2]) // 3 if parts[0] == 'stages' else 0)
                else:
                    layer = num_layers
            else:
                layer = num_layers + 1
            ids[name] = layer
        return ids, num_layers

    def extra_repr(self) -> str:
        return (f'arch={self.arch_name or "custom"}, out_indices={self.out_indices}, '
                f'num_classes={self.num_classes}, deploy={self.deploy}')
