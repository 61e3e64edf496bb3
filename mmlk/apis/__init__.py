"""Entry-point support shared by ``tools/train.py`` and ``tools/test.py``."""
from .amp import BF16AutocastOptimWrapper
from . import checkpoint_compat
from .checkpoint_compat import allow_mmengine_checkpoint_globals

__all__ = ['BF16AutocastOptimWrapper', 'allow_mmengine_checkpoint_globals', 'checkpoint_compat']
