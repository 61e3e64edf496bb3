"""Training-engine components: importing this package registers them in the ``mmlk`` scope."""
from .batch_check import GlobalBatchCheckHook
from .layer_decay import LearningRateDecayOptimWrapperConstructor, layer_id_function
from .rng_state import RNGStateHook

__all__ = ['GlobalBatchCheckHook', 'LearningRateDecayOptimWrapperConstructor', 'layer_id_function', 'RNGStateHook']
