"""Resuming mmengine 0.10.7 runs on torch >= 2.6 without giving up ``weights_only=True``.

torch >= 2.6 unpickles with ``weights_only=True`` by default. mmengine 0.10.7 saves training state
(its message hub's ``HistoryBuffer`` objects holding numpy arrays and scalars) in every checkpoint,
so loading its *own* checkpoints for ``--resume`` or ``tools/test.py`` fails with
``UnpicklingError``. Instead of falling back to full unpickling (which executes arbitrary code from
a file), we allow exactly the plain-data classes mmengine writes, via torch's allow-list.
"""
from typing import List

import numpy as np
import torch

_done = False


def _mmengine_checkpoint_globals() -> List:
    from mmengine.logging.history_buffer import HistoryBuffer
    allowed = [HistoryBuffer, np.ndarray, np.dtype, np.core.multiarray._reconstruct
               if hasattr(np, 'core') else None, np.core.multiarray.scalar if hasattr(np, 'core') else None]
    # numpy >= 1.25 pickles dtypes as instances of per-type classes (np.dtypes.Float64DType, ...).
    dtypes_mod = getattr(np, 'dtypes', None)
    if dtypes_mod is not None:
        allowed += [getattr(dtypes_mod, name) for name in dir(dtypes_mod) if name.endswith('DType')]
    return [item for item in allowed if item is not None]


def allow_mmengine_checkpoint_globals() -> None:
    """Add mmengine's training-state classes to torch's ``weights_only`` allow-list (idempotent)."""
    global _done
    if _done:
        return
    torch.serialization.add_safe_globals(_mmengine_checkpoint_globals())
    _done = True
