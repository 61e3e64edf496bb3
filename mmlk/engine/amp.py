"""Mixed precision on the CPU.

mmengine's ``AmpOptimWrapper`` refuses to start without a GPU. ``--amp`` on a CPU machine uses this
wrapper instead: the forward (and so the backward graph) runs under ``torch.autocast('cpu',
dtype=torch.bfloat16)``. bfloat16 has float32's exponent range, so no loss scaling is needed and the
optimizer steps on float32 master weights as usual.
"""
from contextlib import contextmanager

import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper

from ..registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class BF16AutocastOptimWrapper(OptimWrapper):
    """An :class:`mmengine.optim.OptimWrapper` whose ``optim_context`` autocasts to bfloat16 on CPU."""

    @contextmanager
    def optim_context(self, model: nn.Module):
        with super().optim_context(model), torch.autocast('cpu', dtype=torch.bfloat16):
            yield
