"""Pretrained weights for mmlk models (issue #7).

* :func:`load_pretrained` - strict, reported loading of any released format (used by ``init_weights``).
* :func:`resolve_checkpoint` - ``checkpoints.yaml`` name / path / URL -> verified local file.
* :func:`read_state_dict` - read a file safely into official key names.
* :mod:`.registry` - the ``checkpoints.yaml`` table and the cache directory.
* :mod:`.convert` - upstream downstream / classification files -> checkpoints mmlk's configs load
  (behind ``tools/model_converters/convert_*.py``).
"""
from . import mmengine_compat, safe_load  # noqa: F401  (import mmlk installs them, see mmlk/__init__.py)
from .download import download_file, sha256sum
from .errors import CheckpointError
from .loading import load_pretrained, read_state_dict, resolve_checkpoint
from .registry import default_cache_dir, get_entry, list_checkpoints

__all__ = ['load_pretrained', 'resolve_checkpoint', 'read_state_dict', 'CheckpointError', 'download_file',
           'sha256sum', 'get_entry', 'list_checkpoints', 'default_cache_dir']
