"""mmlk classifiers for mmpretrain.

Imported through the registry's locations (``type='mmlk.DistillImageClassifier'``) or explicitly; never by
``import mmlk``, which stays free of mmpretrain. Without mmpretrain installed this package is empty.
"""
import importlib.util

__all__ = []
if importlib.util.find_spec('mmpretrain') is not None:
    from .distill import DistillImageClassifier  # noqa: F401
    __all__.append('DistillImageClassifier')
