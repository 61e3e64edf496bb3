"""RepNeXt (Zhao, Luo and Ouyang, "RepNeXt: A Fast Multi-Scale CNN using Structural Reparameterization",
arXiv:2406.16004).

The family package: ``model.py`` the layers and the mm backbone (``type='mmlk.RepNeXt'``), ``single_branch.py``
the single-branch "E" token mixers, ``head.py`` the two-head classifier (``type='mmlk.RepNeXtClsHead'``),
``keys.py`` how the family reads its checkpoints' keys, ``timm.py`` the timm classifier and ``repnext_*``
factories (registered when timm imports).
"""
from .head import RepNeXtClsHead
from .model import RepNeXt
from . import timm  # noqa: F401,E402  (timm names repnext_*, when timm imports)

__all__ = ['RepNeXt', 'RepNeXtClsHead']
