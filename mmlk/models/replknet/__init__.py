"""RepLKNet (Ding et al., CVPR 2022, "Scaling Up Your Kernels to 31x31", arXiv:2203.06717).

The family package: ``model.py`` the layers and the mm backbone (``type='mmlk.RepLKNet'``), ``keys.py`` how the
family reads its checkpoints' keys, ``timm.py`` the timm classifier and ``replknet_*`` factories (registered when
timm imports).
"""
from .model import ConvBN, ConvFFN, RepLKBlock, RepLKNet, ReparamLargeKernelConv
from . import timm  # noqa: F401,E402  (timm names replknet_*, when timm imports)

__all__ = ['RepLKNet', 'RepLKBlock', 'ConvFFN', 'ReparamLargeKernelConv', 'ConvBN']
