"""Building convolutions: large depthwise kernels go through :mod:`mmlk.ops`, everything else is ``nn.Conv2d``."""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from mmlk.ops import LargeKernelDWConv2d

#: Depthwise stride-1 'same'-padded convolutions whose larger kernel side reaches this use mmlk's op.
LARGE_KERNEL_MIN = 7

_IntPair = Union[int, Sequence[int]]


def _pair(value: _IntPair) -> Tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def make_conv(in_channels: int, out_channels: int, kernel_size: _IntPair, stride: _IntPair = 1,
              padding: Optional[_IntPair] = None, dilation: int = 1, groups: int = 1, bias: bool = True,
              lk_impl: str = 'auto') -> nn.Conv2d:
    """A conv (padding ``k // 2`` per side unless given); large depthwise ones are :class:`LargeKernelDWConv2d`.

    Both are ``nn.Conv2d`` with ``weight``/``bias`` parameters, so the state-dict layout is the same.
    """
    ks, st = _pair(kernel_size), _pair(stride)
    pad = (ks[0] // 2, ks[1] // 2) if padding is None else _pair(padding)
    depthwise = groups == in_channels == out_channels and groups > 1
    if (depthwise and st == (1, 1) and dilation == 1 and max(ks) >= LARGE_KERNEL_MIN and ks[0] % 2 and ks[1] % 2
            and pad == (ks[0] // 2, ks[1] // 2)):
        return LargeKernelDWConv2d(out_channels, ks, bias=bias, impl=lk_impl)
    return nn.Conv2d(in_channels, out_channels, ks, stride=st, padding=pad, dilation=dilation, groups=groups,
                     bias=bias)


@torch.no_grad()
def conv_from_weights(weight: torch.Tensor, bias: torch.Tensor, stride: _IntPair = 1,
                      padding: Optional[_IntPair] = None, dilation: int = 1, groups: int = 1,
                      lk_impl: str = 'auto') -> nn.Conv2d:
    """A biased conv holding ``weight`` and ``bias`` (on their device and dtype); the geometry comes from
    ``weight`` and the arguments, padding ``k // 2`` unless given. Every merged module is built here."""
    out_channels, in_per_group, kh, kw = weight.shape
    conv = make_conv(in_per_group * groups, out_channels, (kh, kw), stride, padding, dilation, groups, True,
                     lk_impl)
    conv = conv.to(device=weight.device, dtype=weight.dtype)
    conv.weight.copy_(weight)
    conv.bias.copy_(bias)
    return conv


def conv_like(template: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    """:func:`conv_from_weights` with ``template``'s stride, padding, dilation, groups and large-kernel ``impl``
    (read from the conv itself, so a merge keeps the route its module was built with; a plain template gives
    ``'auto'``, which only matters if the merged kernel is large)."""
    return conv_from_weights(weight, bias, template.stride, template.padding, template.dilation[0],
                             template.groups, getattr(template, 'impl', 'auto'))
