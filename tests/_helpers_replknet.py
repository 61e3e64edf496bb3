"""Test helpers for RepLKNet: small arch dicts, BN randomisation, the official key layout from the docs.

The expected key layout is written from shared/docs/REFERENCE.md section 1 (the released checkpoints),
independently of mmlk's modules, so a naming slip in the backbone cannot hide behind itself.
"""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

# Small variants exercising every code path, fast on 2 CPU cores.
TINY = dict(large_kernel_sizes=[13, 11, 9, 7], layers=[1, 1, 2, 1], channels=[16, 32, 32, 64],
            small_kernel=3, dw_ratio=1, ffn_ratio=2)
# XL-like: no small kernel, dw_ratio 1.5.
TINY_XL = dict(large_kernel_sizes=[9, 9, 9, 7], layers=[1, 1, 1, 1], channels=[16, 16, 32, 32],
               small_kernel=None, dw_ratio=1.5, ffn_ratio=2)
# All "large" kernels below the large-kernel-op threshold: plain nn.Conv2d path.
TINY_SMALLK = dict(large_kernel_sizes=[5, 5, 5, 5], layers=[1, 1, 1, 1], channels=[8, 16, 16, 32],
                   small_kernel=3, dw_ratio=2, ffn_ratio=2)
# The real 31B kernels (31/29/27/13) at tiny width: inputs smaller than the kernels.
TINY_31 = dict(large_kernel_sizes=[31, 29, 27, 13], layers=[1, 1, 1, 1], channels=[8, 8, 16, 16],
               small_kernel=5, dw_ratio=1, ffn_ratio=2)

BN_FIELDS = ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')


def randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Give every BN non-trivial affine parameters and running statistics (merge is then a real test)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.25)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                    m.bias.copy_(torch.randn(n, generator=gen) * 0.3)


def max_rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12)).item()


def official_keys(channels: List[int], layers: List[int], kernels: List[int],
                  small_kernel: Optional[int], dw_ratio: float, ffn_ratio: float,
                  num_classes: int = 0, intermediate_norm: bool = False,
                  merged: bool = False) -> Dict[str, Tuple[int, ...]]:
    """Key -> shape of an official RepLKNet state dict, from the documented layout."""
    keys: Dict[str, Tuple[int, ...]] = {}

    def bn(prefix: str, c: int) -> None:
        for f in BN_FIELDS:
            keys[f'{prefix}.{f}'] = () if f == 'num_batches_tracked' else (c, )

    def conv_bn(prefix: str, shape: Tuple[int, ...]) -> None:
        keys[f'{prefix}.conv.weight'] = shape
        bn(f'{prefix}.bn', shape[0])

    c0 = channels[0]
    conv_bn('stem.0', (c0, 3, 3, 3))
    conv_bn('stem.1', (c0, 1, 3, 3))
    conv_bn('stem.2', (c0, c0, 1, 1))
    conv_bn('stem.3', (c0, 1, 3, 3))
    for i, (c, n, k) in enumerate(zip(channels, layers, kernels)):
        dw = int(c * dw_ratio)
        hid = int(c * ffn_ratio)
        for j in range(n):
            lk = f'stages.{i}.blocks.{2 * j}'
            bn(f'{lk}.prelkb_bn', c)
            conv_bn(f'{lk}.pw1', (dw, c, 1, 1))
            conv_bn(f'{lk}.pw2', (c, dw, 1, 1))
            if merged:
                keys[f'{lk}.large_kernel.lkb_reparam.weight'] = (dw, 1, k, k)
                keys[f'{lk}.large_kernel.lkb_reparam.bias'] = (dw, )
            else:
                conv_bn(f'{lk}.large_kernel.lkb_origin', (dw, 1, k, k))
                if small_kernel is not None:
                    conv_bn(f'{lk}.large_kernel.small_conv', (dw, 1, small_kernel, small_kernel))
            ffn = f'stages.{i}.blocks.{2 * j + 1}'
            bn(f'{ffn}.preffn_bn', c)
            conv_bn(f'{ffn}.pw1', (hid, c, 1, 1))
            conv_bn(f'{ffn}.pw2', (c, hid, 1, 1))
        if intermediate_norm:
            bn(f'stages.{i}.norm', c)
        if i < 3:
            conv_bn(f'transitions.{i}.0', (channels[i + 1], c, 1, 1))
            conv_bn(f'transitions.{i}.1', (channels[i + 1], 1, 3, 3))
    if num_classes:
        bn('norm', channels[-1])
        keys['head.weight'] = (num_classes, channels[-1])
        keys['head.bias'] = (num_classes, )
    return keys


def keys_of_arch(arch: dict, **kwargs) -> Dict[str, Tuple[int, ...]]:
    return official_keys(arch['channels'], arch['layers'], arch['large_kernel_sizes'],
                         arch['small_kernel'], arch['dw_ratio'], arch['ffn_ratio'], **kwargs)
