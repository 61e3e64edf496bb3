"""Resolve a checkpoint: a ``checkpoints.yaml`` name, a local path or a URL -> a verified local file.

Names are looked up in :mod:`.catalog` and downloaded into the cache (sha256-verified, bounded, atomic);
``file://`` URLs are read in place; other URLs are cached by their address. Nothing here reads the file's
contents beyond what verifying it needs.
"""
import os
import os.path as osp
import re
from typing import Optional, Tuple, Union
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from .catalog import (cache_file_name, cache_path, default_cache_dir, direct_alternatives, direct_urls, get_entry,
                      manual_locations, suggest_names, url_cache_path)
from .download import check_sha256, download_file, download_lock, verify_cached
from .errors import CheckpointError


def manual_hint(entry: dict, dest: str) -> str:
    where = '; '.join(manual_locations(entry)) or 'no public location is recorded'
    return (f'Download "{entry["name"]}" by hand ({where}) and save it as {dest}, or pass the file\'s path '
            'instead of the name.')


def _file_url_path(url: str) -> str:
    """The local path of a ``file://`` URL (read in place: never copied into the cache)."""
    parsed = urlparse(url)
    if parsed.netloc not in ('', 'localhost'):
        raise CheckpointError(f'{url}: file:// URLs must name a local file (file:///path); use the path itself')
    path = url2pathname(unquote(parsed.path))
    if not osp.isfile(path):
        what = ('is a directory' if osp.isdir(path) else
                'is not a regular file' if osp.exists(path) else 'does not exist')
        raise CheckpointError(f'{url}: {path} {what}; give the path of a checkpoint file')
    return path


def _legacy_cached(entry: dict, cache: str) -> Optional[str]:
    """A file cached flat as ``<cache>/<file name>`` by earlier mmlk versions, reused only if its hash is known
    and matches (flat names were shared between sources, so nothing else vouches for it)."""
    expected = entry.get('sha256')
    try:
        old = osp.join(cache, cache_file_name(entry))
    except CheckpointError:
        return None
    if not expected or not osp.isfile(old):
        return None
    try:
        check_sha256(old, expected)
    except CheckpointError:
        return None  # another source's file of the same name: leave it alone, fetch our own
    return old


def resolve_checkpoint(checkpoint: Union[str, os.PathLike], cache_dir: Optional[str] = None,
                       download: Optional[bool] = None, progress: bool = True, max_bytes: Optional[int] = None,
                       stall_timeout: Optional[float] = None) -> Tuple[str, Optional[dict]]:
    """Turn a checkpoints.yaml name, a path or a URL into a local, verified file.

    Args:
        checkpoint: name (a ``checkpoints.yaml`` entry's ``name``), local path, http(s) URL, or ``file://`` URL
            (read in place, like a path).
        cache_dir: cache for names and URLs. Defaults to ``$MMLK_CACHE_DIR`` or ``~/.cache/mmlk/checkpoints``.
            Names are cached as ``<cache>/<name>/<file>``, URLs as ``<cache>/url-<host>-<digest>/<file>``.
        download: fetch missing files; defaults to True unless ``$MMLK_OFFLINE`` is set.
        progress: show a progress bar while downloading.
        max_bytes: download size limit when neither the registry nor the server states the size
            (default ``$MMLK_DOWNLOAD_MAX_BYTES`` or 4 GiB).
        stall_timeout: seconds without progress before a download stops (default
            ``$MMLK_DOWNLOAD_STALL_TIMEOUT`` or 60).

    Returns:
        ``(local path, checkpoints.yaml entry or None)``.
    """
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f'checkpoint must be a name, path or URL string, got {type(checkpoint).__name__}')
    spec = os.fspath(checkpoint)
    cache = cache_dir or default_cache_dir()
    if download is None:
        download = not os.environ.get('MMLK_OFFLINE')
    limits = dict(progress=progress, max_bytes=max_bytes, stall_timeout=stall_timeout)
    local = osp.expanduser(spec)
    if osp.isfile(local):
        return local, None
    if osp.isdir(local):
        raise CheckpointError(f'{spec} is a directory, not a checkpoint file; give the path of the file')
    if re.match(r'^file://', spec, flags=re.I):
        return _file_url_path(spec), None
    if re.match(r'^https?://', spec, flags=re.I):
        dest = url_cache_path(spec, cache)
        name = osp.basename(dest)
        # OpenMMLab / torch.hub convention: "<name>-<sha256 prefix>.<ext>".
        m = re.search(r'-([0-9a-f]{8,64})\.[A-Za-z]+$', name)
        prefix = m.group(1) if m else None
        if osp.isfile(dest):
            verify_cached(dest, prefix)
            return dest, None
        if not download:
            raise CheckpointError(f'{spec} is not in the cache {cache} and downloads are off (MMLK_OFFLINE)')
        with download_lock(dest):
            if osp.isfile(dest):  # another process fetched it while we waited
                verify_cached(dest, prefix)
                return dest, None
            return download_file(spec, dest, sha256=prefix, **limits), None
    entry = get_entry(spec)
    if entry is None:
        close = suggest_names(spec)
        hint = f' Did you mean {", ".join(close)}?' if close else ' `python -m mmlk list` shows the names.'
        raise CheckpointError(f'{spec!r} is neither an existing file, a URL, nor a name in checkpoints.yaml.{hint}')
    if entry.get('format') == 'coreml':
        raise CheckpointError(f'{entry["name"]} is a Core ML model (on-device inference); it holds no PyTorch '
                              'weights. Use the .pth entry of the same model.')
    dest = cache_path(entry, cache)
    if osp.isfile(dest):
        verify_cached(dest, entry.get('sha256'))
        return dest, entry
    old = _legacy_cached(entry, cache)
    if old is not None:
        return old, entry
    urls = direct_urls(entry)
    hint = manual_hint(entry, dest)
    if not urls:
        alt = direct_alternatives(entry)
        alt_hint = (f' The same weights, converted by OpenMMLab, download directly: use {" or ".join(map(repr, alt))} '
                    'instead (mmlk loads that format too).' if alt else '')
        raise CheckpointError(f'{entry["name"]} is published only on Google Drive / Baidu, which need a browser, '
                              f'so mmlk cannot fetch it. {hint}{alt_hint}')
    if not download:
        raise CheckpointError(f'{entry["name"]} is not in the cache and downloads are off (MMLK_OFFLINE). {hint}')
    size = entry.get('size')
    errors = []
    with download_lock(dest):
        if osp.isfile(dest):  # another process fetched it while we waited
            verify_cached(dest, entry.get('sha256'))
            return dest, entry
        for url in urls:
            try:
                return download_file(url, dest, sha256=entry.get('sha256'), manual_hint=hint,
                                     expected_size=int(size) if size else None, **limits), entry
            except CheckpointError as e:
                errors.append(str(e))
    raise CheckpointError('\n'.join(errors))
