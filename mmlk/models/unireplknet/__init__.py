"""UniRepLKNet (Ding et al., CVPR 2024, arXiv:2311.15599): the successor of RepLKNet, Dilated Reparam Blocks.

The family package: ``model.py`` the layers and the mm backbone (``type='mmlk.UniRepLKNet'``), ``keys.py`` how
the family reads its checkpoints' keys, ``timm.py`` the timm classifier and ``unireplknet_*`` factories
(registered when timm imports).
"""
from .model import DILATED_BRANCHES, DilatedReparamConv, UniRepLKNet, UniRepLKNetBlock, default_kernel_sizes
from . import timm  # noqa: F401,E402  (timm names unireplknet_*, when timm imports)

__all__ = ['UniRepLKNet', 'UniRepLKNetBlock', 'DilatedReparamConv', 'DILATED_BRANCHES', 'default_kernel_sizes']
