"""Checkpoint files: the layer beneath the models, which knows no model (issue #23).

* :func:`resolve_checkpoint` - ``checkpoints.yaml`` name / path / URL -> verified local file (:mod:`.resolve`).
* :mod:`.catalog` - the ``checkpoints.yaml`` table and the cache directory.
* :mod:`.download` - bounded, verified, atomic downloads; :mod:`.atomic` - atomic writes.
* :mod:`.reader` / :mod:`.safe_load` - reading files without running their code (weights_only, TorchScript
  tensors), the weights_only allow-list of mmengine's run state (:mod:`.mmengine_compat`).
* :mod:`.containers` - where the state dict sits in a loaded file.

Loading weights *into* a model (key matching, families' formats, merging while loading) lives with the models:
:mod:`mmlk.models.weights` (``load_pretrained``).
"""
from . import mmengine_compat, safe_load  # noqa: F401  (import mmlk installs them, see mmlk/__init__.py)
from .catalog import default_cache_dir, get_entry, list_checkpoints
from .download import download_file, sha256sum
from .errors import CheckpointError
from .resolve import resolve_checkpoint

__all__ = ['resolve_checkpoint', 'CheckpointError', 'download_file', 'sha256sum', 'get_entry', 'list_checkpoints',
           'default_cache_dir']
