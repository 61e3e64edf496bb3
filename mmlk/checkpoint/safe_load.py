"""Checkpoint reading for mmlk's tools that never runs code from a file, whatever torch's defaults.

mmengine 0.10.7 reads checkpoints (``load_from``, ``--resume``, ``Pretrained`` init of host models)
with ``torch.load(path)``, i.e. with torch's *default* ``weights_only``. Setting
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (or an older torch) turns that into full unpickling, which runs
any code a malicious file carries. :func:`install_safe_checkpoint_loader` replaces mmengine's loaders for
local paths and http(s) URLs with ones that

* check the file first (empty files, HTML pages, text, truncated or bit-flipped zip archives get a
  one-line :class:`~mmlk.checkpoint.CheckpointError` instead of ``EOFError`` / ``KeyError``), and
* call ``torch.load(..., weights_only=True)`` explicitly (an explicit value wins over the variable),
  with mmengine's own run-state classes allowed (see :mod:`.mmengine_compat`);
* fetch URLs through mmlk's verified, size- and stall-bounded downloader.
"""
import os.path as osp
import re
from typing import Any

import torch

from . import mmengine_compat


def load_checkpoint_safely(filename: str, map_location: Any = None) -> Any:
    """``torch.load(filename, weights_only=True)`` after checking the file's structure."""
    from mmlk.checkpoint.errors import CheckpointError
    from mmlk.checkpoint.reader import _safe_globals, check_zip, sniff_container
    path = osp.expanduser(filename)
    if not osp.isfile(path):
        what = 'is a directory, not a checkpoint file' if osp.isdir(path) else 'does not exist'
        raise CheckpointError(f'checkpoint {filename} {what}')
    if sniff_container(path) == 'zip':
        check_zip(path)
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - every failure becomes one message naming the file
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if 'GLOBAL' in str(e):  # torch's weights_only refusal names the global the file asks for
            wanted = sorted(set(re.findall(r'GLOBAL ([\w.]+)', str(e))))
            raise CheckpointError(f'refusing to load {filename}: it asks for {", ".join(wanted)}, which only running '
                                  'code from the file could restore; mmlk loads checkpoints with '
                                  'weights_only=True only. Re-save the weights from a trusted copy.') from e
        raise CheckpointError(f'cannot read {filename}: the file is truncated, corrupted or not a PyTorch '
                              f'checkpoint ({type(e).__name__}: {first}). Delete it and save or download it '
                              'again.') from e


def load_url_safely(url: str, map_location: Any = None) -> Any:
    """Fetch ``url`` into mmlk's cache (verified, bounded) and read it with :func:`load_checkpoint_safely`."""
    from mmlk.checkpoint.resolve import resolve_checkpoint
    path, _ = resolve_checkpoint(url)
    return load_checkpoint_safely(path, map_location)


def install_safe_checkpoint_loader() -> None:
    """Route mmengine's local-path and http(s) checkpoint loading through the functions above (idempotent)."""
    from mmengine.runner.checkpoint import CheckpointLoader

    # mmengine logs the backend as the function name minus its first 10 characters ("load_from_").
    def load_from_mmlk_safe(filename: str, map_location: Any = None) -> Any:
        return load_checkpoint_safely(filename, map_location)

    def load_from_mmlk_url(filename: str, map_location: Any = None) -> Any:
        return load_url_safely(filename, map_location)

    CheckpointLoader.register_scheme(prefixes='', loader=load_from_mmlk_safe, force=True)
    CheckpointLoader.register_scheme(prefixes=['http://', 'https://'], loader=load_from_mmlk_url, force=True)


def install() -> None:
    """What ``import mmlk`` installs in mmengine: the weights_only allow-list of its run state
    (:func:`mmlk.checkpoint.mmengine_compat.install`) and the checking loaders above (idempotent)."""
    mmengine_compat.install()
    # mmengine reads local and http(s) checkpoints with torch's default weights_only: route both through
    # the loaders above, which pass weights_only=True explicitly.
    install_safe_checkpoint_loader()
