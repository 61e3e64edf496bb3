"""mmlk: large-kernel and re-parameterised CNN backbones for OpenMMLab.

``import mmlk`` registers every mmlk class in the ``mmlk`` registry scope (and timm model names when
timm is installed). It deliberately imports none of mmdet, mmseg or mmpretrain.
"""
from .version import __version__
from . import registry  # noqa: F401  (creates the scope before any class registers)
from . import models  # noqa: F401
from . import engine  # noqa: F401
from . import apis  # noqa: F401

__all__ = ['__version__']
