"""Resuming mmengine 0.10.7 runs on torch >= 2.6 without giving up ``weights_only=True``.

torch >= 2.6 unpickles with ``weights_only=True`` by default. mmengine 0.10.7 stores its message hub's
``HistoryBuffer`` objects (numpy arrays of logged scalars) in every checkpoint, pickled through their
``__dict__``, which refers to bound methods via ``getattr``. Loading such a file for ``--resume`` or
``tools/test.py`` then fails with ``UnpicklingError``. Rather than fall back to full unpickling (which
runs arbitrary code from a file), mmlk's tools

1. pickle ``HistoryBuffer`` by its constructor arguments (a ``copyreg`` reducer), so the checkpoints
   they write contain only plain data, and
2. allow exactly the classes those checkpoints contain (``HistoryBuffer``, numpy arrays, dtypes and
   scalars) through torch's ``weights_only`` allow-list.

Checkpoints written by plain mmengine tools still contain ``getattr`` and keep being refused.
"""
import copyreg
from typing import List

import numpy as np
import torch

_registered = False


def _reduce_history_buffer(buffer):
    return type(buffer), (buffer._log_history, buffer._count_history, buffer.max_length)


def _numpy_globals() -> List:
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    allowed = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    # numpy >= 1.25 pickles dtypes as instances of per-type classes (np.dtypes.Float64DType, ...).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        allowed += [getattr(dtypes, name) for name in dir(dtypes) if name.endswith('DType')]
    return allowed


def allow_mmengine_checkpoint_globals() -> None:
    """Install the ``HistoryBuffer`` reducer and the allow-list entries (idempotent)."""
    global _registered
    if _registered:
        return
    from mmengine.logging.history_buffer import HistoryBuffer
    copyreg.pickle(HistoryBuffer, _reduce_history_buffer)
    torch.serialization.add_safe_globals([HistoryBuffer] + _numpy_globals())
    _registered = True
