"""mmlk classifiers for mmpretrain.

``import mmlk`` never imports this package (it stays free of mmpretrain). mmlk's MODELS registry lists it
as a location, so building any ``mmlk.*`` model by name imports it: then the classifiers register only when
mmpretrain is already loaded (an mmpretrain run), so mmseg / mmdet users never pay for importing mmpretrain.
Configs name ``mmlk.models.classifiers.distill`` in ``custom_imports`` to register it unconditionally.
"""
import sys

__all__ = []
if 'mmpretrain' in sys.modules:
    from .distill import DistillImageClassifier  # noqa: F401
    __all__.append('DistillImageClassifier')
