"""Arithmetic of structural re-parameterisation, shared by every mmlk backbone.

All functions are pure tensor maths on ``(out, in/groups, kh, kw)`` kernels, so merging is exact up
to floating-point rounding and independent of how a module stores its parts.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


def fuse_conv_bn(weight: torch.Tensor, bias: Optional[torch.Tensor],
                 bn: nn.modules.batchnorm._BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm that follows a conv into the conv's weight and bias.

    ``bn(conv(x)) == conv'(x)`` with ``w' = w * g / s`` and ``b' = beta + (b - mean) * g / s``,
    ``s = sqrt(var + eps)``. Works for any norm with running statistics (BN, SyncBN); a BN without
    affine parameters counts as ``g = 1, beta = 0``.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f'cannot fold {type(bn).__name__} without running statistics '
                         '(track_running_stats=False); merge is only exact for BN-like norms')
    std = (bn.running_var + bn.eps).sqrt()
    gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    fused_weight = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    conv_bias = bias if bias is not None else torch.zeros_like(bn.running_mean)
    fused_bias = beta + (conv_bias - bn.running_mean) * scale
    return fused_weight, fused_bias


def pad_kernel(kernel: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Zero-pad a ``(..., kh, kw)`` kernel symmetrically to ``size`` (both odd, centres aligned)."""
    kh, kw = kernel.shape[-2:]
    th, tw = size
    if (th - kh) % 2 or (tw - kw) % 2 or th < kh or tw < kw:
        raise ValueError(f'cannot centre a {kh}x{kw} kernel inside {th}x{tw}')
    ph, pw = (th - kh) // 2, (tw - kw) // 2
    return F.pad(kernel, [pw, pw, ph, ph])
