"""mmlk classification heads."""
from .repnext_head import RepNeXtClsHead  # noqa: F401

__all__ = ['RepNeXtClsHead']
