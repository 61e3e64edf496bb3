"""One read per process of a host package's config index, so that ``pkg::`` bases cost a lookup.

mmengine resolves every external base (``_base_ = ['mmdet::_base_/models/...']``) through
``mmengine.config.utils._get_cfg_metainfo``, which reads the package's ``.mim/model-index.yml`` and every
metafile it lists (102 YAML files for mmdet 3.3, about 0.5 s with PyYAML's Python constructor) on EACH call,
and calls it even for ``_base_/`` paths, which are in no metafile (the ``ValueError`` it raises then sends
mmengine to the plain base path). An mmlk detection config has four such bases, so one ``Config.fromfile``
spent about 2 s re-reading the same files. A package's index only changes when the package is re-installed:
:func:`install` (run by ``import mmlk``) keeps each package's index in memory and re-reads it when its
``model-index.yml`` changes (size or modification time). The result, the exception and its message are
mmengine's own; a metafile entry without ``Config`` is warned about once per read instead of once per call.
"""
import os
import os.path as osp
import warnings
from typing import Dict, Tuple

# package path -> ((size, mtime_ns) of model-index.yml, {config name: metafile entry})
_INDEXES: Dict[str, Tuple[Tuple[int, int], Dict[str, dict]]] = {}


def _read_index(package_path: str) -> Dict[str, dict]:
    """{metafile ``Config`` path without its first folder: the first entry naming it}, as mmengine builds it."""
    from mmengine.fileio import load
    mim = osp.join(package_path, '.mim')
    index: Dict[str, dict] = {}
    for meta_path in load(osp.join(mim, 'model-index.yml'))['Import']:
        for model_cfg in load(osp.join(mim, meta_path))['Models']:
            if 'Config' not in model_cfg:
                warnings.warn(f'There is not `Config` define in {model_cfg}')
                continue
            # a config listed with several weights: the first entry wins (mmengine's rule)
            index.setdefault(model_cfg['Config'].partition('/')[-1], model_cfg)
    return index


def cfg_metainfo(package_path: str, cfg_path: str) -> dict:
    """Drop-in for mmengine's ``_get_cfg_metainfo``: the metafile entry of config ``cfg_path`` of the package.

    Args:
        package_path: the installed package's directory (``mmengine.utils.get_installed_path``).
        cfg_path: a metafile ``Config`` path without its first folder, e.g.
            ``'mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'`` (mmengine 0.10 passes the base's name cut at its first
            dot, which no entry matches: the ``ValueError`` then sends it to the package's config directory).

    Raises:
        FileNotFoundError: the package ships no ``.mim/model-index.yml`` (as mmengine's own function).
        ValueError: no metafile entry has that config (mmengine's message; it then tries the base path).
    """
    st = os.stat(osp.join(package_path, '.mim', 'model-index.yml'))
    signature = (st.st_size, st.st_mtime_ns)
    cached = _INDEXES.get(package_path)
    if cached is None or cached[0] != signature:
        cached = _INDEXES[package_path] = (signature, _read_index(package_path))
    index = cached[1]
    if cfg_path not in index:
        raise ValueError(f'Expected configs: {index.keys()}, but got {cfg_path}')
    return index[cfg_path]


def install() -> None:
    """Make mmengine's config loader use :func:`cfg_metainfo` (idempotent; a no-op on an mmengine without it)."""
    from mmengine.config import utils
    if getattr(utils, '_get_cfg_metainfo', None) in (None, cfg_metainfo):
        return
    utils._mmlk_uncached_cfg_metainfo = utils._get_cfg_metainfo  # kept for comparison (tests)
    utils._get_cfg_metainfo = cfg_metainfo
