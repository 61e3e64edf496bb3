"""``checkpoints.yaml``: the table of released weights, and the local cache they are kept in.

Every released file mmlk knows has one entry; its ``name`` can be used wherever a checkpoint is expected
(``init_cfg=dict(type='Pretrained', checkpoint=NAME)``). What its ``format`` values mean is the model side's
knowledge (:func:`mmlk.models.weights.keys.known_formats`): this file layer knows no model.
"""
import difflib
import functools
import hashlib
import os
import os.path as osp
import re
from typing import Dict, List, Optional
from urllib.parse import urlparse

from ..utils.resources import resource_path
from .errors import CheckpointError

FORMS = ('train', 'merged')
TASKS = ('classification', 'segmentation', 'detection', 'instance-segmentation')


def default_cache_dir() -> str:
    """Where named checkpoints are cached: ``$MMLK_CACHE_DIR`` or ``~/.cache/mmlk/checkpoints``."""
    env = os.environ.get('MMLK_CACHE_DIR')
    if env:
        return osp.abspath(osp.expanduser(env))
    return osp.join(osp.expanduser('~'), '.cache', 'mmlk', 'checkpoints')


def checkpoints_yaml_path() -> str:
    """Locate ``checkpoints.yaml`` through mmlk's one resource locator (:func:`mmlk.utils.resource_path`:
    ``$MMLK_CHECKPOINTS_YAML``, the source checkout, then the installed ``.mim`` copy)."""
    try:
        return resource_path('checkpoints.yaml')
    except FileNotFoundError as e:
        raise CheckpointError(str(e)) from None


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> Dict[str, dict]:
    import yaml  # local: yaml is only needed when names are used
    with open(path, encoding='utf-8') as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict) or not isinstance(data.get('checkpoints'), list):
        raise CheckpointError(f'{path}: expected a mapping with a "checkpoints" list')
    table: Dict[str, dict] = {}
    for entry in data['checkpoints']:
        name = str(entry.get('name', '')).lower()
        if not name or name in table:
            raise CheckpointError(f'{path}: missing or duplicate checkpoint name {name!r}')
        table[name] = entry
    return table


def load_registry(path: Optional[str] = None) -> Dict[str, dict]:
    """All entries of ``checkpoints.yaml`` keyed by lower-case name (re-read when the file changes)."""
    path = path or checkpoints_yaml_path()
    return _load(path, osp.getmtime(path))


def list_checkpoints(path: Optional[str] = None) -> List[dict]:
    return list(load_registry(path).values())


def get_entry(name: str, path: Optional[str] = None) -> Optional[dict]:
    """The entry called ``name`` (case-insensitive), or None."""
    try:
        return load_registry(path).get(name.lower())
    except CheckpointError:
        return None


def suggest_names(name: str, path: Optional[str] = None) -> List[str]:
    try:
        names = list(load_registry(path))
    except CheckpointError:
        return []
    return difflib.get_close_matches(name.lower(), names, n=3, cutoff=0.5)


def direct_urls(entry: dict) -> List[str]:
    """URLs a program can fetch without a browser, in order of preference."""
    dl = entry.get('download') or {}
    return [u for u in (dl.get('github_release'), dl.get('huggingface'), dl.get('openmmlab')) if u]


def direct_alternatives(entry: dict, path: Optional[str] = None) -> List[str]:
    """Names of converted copies of ``entry`` (``converted_from``) that download without a browser."""
    try:
        table = load_registry(path)
    except CheckpointError:
        return []
    return [e['name'] for e in table.values()
            if str(e.get('converted_from', '')).lower() == entry['name'].lower() and direct_urls(e)]


def manual_locations(entry: dict) -> List[str]:
    """Human-readable download locations, including those that need a browser."""
    dl = entry.get('download') or {}
    out = []
    if dl.get('github_release'):
        out.append(f'GitHub release: {dl["github_release"]}')
    if dl.get('huggingface'):
        out.append(f'Hugging Face: {dl["huggingface"]}')
    if dl.get('openmmlab'):
        out.append(f'OpenMMLab: {dl["openmmlab"]}')
    if dl.get('google_drive_id'):
        out.append(f'Google Drive: https://drive.google.com/file/d/{dl["google_drive_id"]}/view')
    baidu = dl.get('baidu')
    if baidu:
        out.append(f'Baidu: {baidu["url"]} (extraction code {baidu["code"]})')
    return out


def safe_name(name: str, what: str) -> str:
    """``name`` if it is a plain file name (no separators, no ``.`` / ``..``, no NUL), else raise.

    Names from checkpoints.yaml and URLs become paths inside the cache; this keeps every write there.
    """
    bad = (not isinstance(name, str) or name in ('', '.', '..') or '\0' in name
           or any(sep in name for sep in ('/', '\\', os.sep, os.altsep or '/')))
    if bad:
        raise CheckpointError(f'{what} {name!r} is not a plain file name (no path separators or "..") '
                              'and cannot be used inside the cache; fix the entry in checkpoints.yaml')
    return name


def cache_file_name(entry: dict) -> str:
    """File name of the entry inside the cache: the upstream name where known, else ``NAME.pth``."""
    if entry.get('file_name'):
        return safe_name(str(entry['file_name']), f'file_name of {entry.get("name")!r}')
    for url in direct_urls(entry):
        base = osp.basename(urlparse(url).path)
        if base not in ('', '.', '..'):
            return safe_name(base, f'URL file name of {entry.get("name")!r}')
    return safe_name(f'{entry["name"]}.pth', 'checkpoint name')


def cache_path(entry: dict, cache_dir: str) -> str:
    """``<cache>/<entry name>/<file name>``: keyed by the entry, so two entries that share an upstream
    file name (or a renamed entry) never hand out each other's file."""
    folder = safe_name(str(entry['name']).lower(), 'checkpoint name')
    return osp.join(cache_dir, folder, cache_file_name(entry))


def url_cache_path(url: str, cache_dir: str) -> str:
    """``<cache>/url-<host>-<digest of the URL>/<file name>``: keyed by the whole URL, so
    ``http://a/x/good.pth`` and ``http://b/y/good.pth`` are cached apart."""
    parsed = urlparse(url)
    base = osp.basename(parsed.path)
    if base in ('', '.', '..') or '\\' in base or '\0' in base:
        base = 'checkpoint.pth'
    host = re.sub(r'[^A-Za-z0-9._-]', '_', parsed.netloc)[:64] or 'local'
    digest = hashlib.sha256(url.encode('utf-8')).hexdigest()[:12]
    return osp.join(cache_dir, f'url-{host}-{digest}', base)
