"""Training-engine components: importing this package registers them in the ``mmlk`` scope."""
from .amp import BF16AutocastOptimWrapper
from .batch_check import GlobalBatchCheckHook
from .layer_decay import LearningRateDecayOptimWrapperConstructor, layer_id_function
from .rng_state import RNGStateHook

__all__ = ['BF16AutocastOptimWrapper', 'GlobalBatchCheckHook', 'LearningRateDecayOptimWrapperConstructor', 'layer_id_function', 'RNGStateHook']
