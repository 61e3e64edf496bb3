"""Training-engine components: importing this package registers them in the ``mmlk`` scope."""
from .batch_check import GlobalBatchCheckHook
from .layer_decay import (LAYER_ID_FUNCTIONS, LearningRateDecayOptimWrapperConstructor, replknet_layer_ids,
                          repnext_layer_ids)
from .rng_state import RNGStateHook

__all__ = ['GlobalBatchCheckHook', 'LearningRateDecayOptimWrapperConstructor', 'LAYER_ID_FUNCTIONS',
           'replknet_layer_ids', 'repnext_layer_ids', 'RNGStateHook']
