"""mmengine checkpoints under torch's ``weights_only=True`` loading, installed by ``import mmlk``.

torch >= 2.6 unpickles with ``weights_only=True`` by default, and mmengine 0.10.7 stores its message hub
(logged scalars) in every checkpoint a Runner writes. Those files ask the unpickler for

* ``mmengine.logging.history_buffer.HistoryBuffer`` (one per logged scalar),
* numpy's array reconstruction (``numpy.core.multiarray._reconstruct``, ``scalar``, ``ndarray``,
  ``dtype`` and the per-type dtype classes such as ``numpy.dtypes.Float64DType``) and ``_codecs.encode``
  (torch allows the latter already), and
* ``__builtin__.getattr(HistoryBuffer, 'min' | 'max' | 'current' | 'mean')``: the buffer's statistics
  methods, which pickle by reference through ``getattr``.

Without them every host tool (``train.py --resume``, ``test.py``, ``init_model``, the inferencers,
``reparameterize_model.py``) fails with ``UnpicklingError``, and users reach for
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which turns any malicious checkpoint into code execution.

:func:`install` (called by ``import mmlk``, so also by ``custom_imports=dict(imports=['mmlk'])``):

1. allows the classes above, and instead of the real ``getattr`` a stand-in,
   :func:`history_buffer_statistic`, that resolves only those four method names and only on
   ``HistoryBuffer`` (the class or an instance); anything else raises ``UnpicklingError``;
2. pickles ``HistoryBuffer`` by its constructor arguments as plain lists (a ``copyreg`` reducer), so
   checkpoints written in a process that imported mmlk hold no numpy objects and no ``getattr``;
3. reads local paths and http(s) URLs in mmengine's ``CheckpointLoader`` (what ``load_checkpoint``,
   ``Runner.resume`` and the host APIs use) through :mod:`mmlk.checkpoint.safe_load`: the file's structure
   is checked first (one-line errors for empty, HTML, truncated or bit-flipped files; URLs through
   mmlk's bounded, verified downloader) and ``torch.load`` gets an explicit ``weights_only=True``,
   so the refusal also holds when ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is set (torch honours that
   variable only where the caller left ``weights_only`` unset).

``weights_only=False`` is never used.
"""
import copyreg
import logging
import os
import pickle
from typing import Any, Callable, List, Tuple, Union

import torch

#: The statistics methods ``HistoryBuffer`` registers by default (mmengine 0.10.x); the only names
#: :func:`history_buffer_statistic` resolves.
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')

_installed = False


def _history_buffer_class() -> type:
    from mmengine.logging.history_buffer import HistoryBuffer
    return HistoryBuffer


def history_buffer_statistic(obj: Any, name: str) -> Callable:
    """Restricted ``getattr`` for unpickling: ``HistoryBuffer``'s statistics methods and nothing else.

    Allowed under the name ``builtins.getattr`` in torch's ``weights_only`` allow-list, where the real
    ``getattr`` would hand a pickle any attribute of any allowed object (e.g. a class's ``__init__`` or
    ``__globals__``).

    Raises:
        pickle.UnpicklingError: for any other object or attribute name.
    """
    buffer_cls = _history_buffer_class()
    if (obj is buffer_cls or type(obj) is buffer_cls) and name in HISTORY_BUFFER_STATISTICS:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'refusing getattr({type(obj).__name__ if not isinstance(obj, type) else obj.__name__}, {name!r}) '
        f'while unpickling: mmlk allows getattr only for HistoryBuffer.{{{",".join(HISTORY_BUFFER_STATISTICS)}}} '
        '(mmengine logging state). This file is not a plain mmengine checkpoint; do not load it unless you '
        'know where it comes from.')


def _reduce_history_buffer(buffer) -> Tuple[type, tuple]:
    # Plain lists instead of numpy arrays: the file then needs only HistoryBuffer itself to be allowed.
    return type(buffer), (buffer._log_history.tolist(), buffer._count_history.tolist(), buffer.max_length)


def numpy_globals() -> List[type]:
    """The numpy globals a pickled array, scalar or dtype refers to (for the allow-list)."""
    import numpy as np
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    allowed = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    # numpy >= 1.25 pickles dtypes as instances of per-type classes (np.dtypes.Float64DType, ...).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        allowed += [getattr(dtypes, name) for name in dir(dtypes) if name.endswith('DType')]
    return allowed


def safe_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    """Everything :func:`install` adds to torch's allow-list (also usable with ``torch.serialization.safe_globals``)."""
    return [_history_buffer_class(), (history_buffer_statistic, 'builtins.getattr')] + numpy_globals()


def install() -> None:
    """Allow mmengine's checkpoint contents under ``weights_only=True`` (idempotent; see module docstring)."""
    global _installed
    if _installed:
        return
    buffer_cls = _history_buffer_class()
    copyreg.pickle(buffer_cls, _reduce_history_buffer)
    torch.serialization.add_safe_globals(safe_globals())
    # (mmlk's checking loaders for mmengine, mmlk/checkpoint/safe_load.py, sit above this allow-list and are
    # installed with it by :func:`mmlk.checkpoint.safe_load.install`; importing them here would close an import circle.)
    if os.environ.get('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '0').lower() in ('1', 'y', 'yes', 'true'):
        from mmengine.logging import print_log
        print_log('mmlk: TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set, but mmengine checkpoints load with '
                  'weights_only=True anyway (mmlk allows their logging state); unset the variable, it makes '
                  'other torch.load calls run code from the file.', logger='current', level=logging.WARNING)
    _installed = True


def allow_mmengine_checkpoint_globals() -> None:
    """Backward-compatible name of :func:`install`."""
    install()
