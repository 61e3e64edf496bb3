"""Dropping the kernel taps that only ever read zero padding, and restoring them in the weight gradient.

With 'same' padding a 31x31 kernel on a 7x7 map has only 13x13 taps that ever touch data (RepLKNet's last
stage); every route that does not skip those taps itself gets the cropped kernel, which is exact.
"""
from typing import Tuple

import torch
import torch.nn.functional as F


def effective_kernel(kh: int, kw: int, h: int, w: int) -> Tuple[int, int]:
    """Kernel size after dropping taps that only ever see zero padding.

    With 'same' padding, a tap at offset ``t`` from the centre reads inside the map only if ``|t| <= H - 1``,
    so a kernel larger than ``2H - 1`` can be cropped to that size for free.
    """
    return min(kh, 2 * h - 1), min(kw, 2 * w - 1)


def crop_kernel(weight: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The centred part of ``weight`` that can reach an ``h x w`` map (a view; ``weight`` itself if all can)."""
    kh, kw = weight.shape[-2:]
    ekh, ekw = effective_kernel(kh, kw, h, w)
    if (ekh, ekw) == (kh, kw):
        return weight
    oh, ow = (kh - ekh) // 2, (kw - ekw) // 2
    return weight[..., oh:oh + ekh, ow:ow + ekw]


def uncrop_weight_grad(gw: torch.Tensor, shape: Tuple[int, ...]) -> torch.Tensor:
    """Zero-pad a weight gradient of a cropped kernel back to the full kernel shape."""
    kh, kw = shape[-2:]
    ekh, ekw = gw.shape[-2:]
    if (ekh, ekw) == (kh, kw):
        return gw
    oh, ow = (kh - ekh) // 2, (kw - ekw) // 2
    return F.pad(gw, (ow, kw - ekw - ow, oh, kh - ekh - oh))
