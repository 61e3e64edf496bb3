"""Fetching checkpoints: resumable HTTP downloads, sha256 verification, atomic moves into the cache.

A download goes to ``<cache>/<file>.part``; an interrupted transfer leaves that partial file and the next
attempt continues it with an HTTP ``Range`` request. Only a complete file whose hash matches (or, without
a known hash, whose zip archive passes its CRC check) is moved into place with ``os.replace``, so the cache
never holds a half-written or unverified checkpoint under its final name.
"""
import contextlib
import hashlib
import os
import os.path as osp
import re
import urllib.error
import urllib.request
import zipfile
from typing import Iterator, Optional

from .errors import CheckpointError

CHUNK = 1 << 20
_HEX = re.compile(r'^[0-9a-f]{8,64}$')


def sha256sum(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(CHUNK), b''):
            h.update(block)
    return h.hexdigest()


def check_sha256(path: str, expected: Optional[str]) -> str:
    """Hash ``path`` and compare with ``expected`` (a full hash or a prefix of at least 8 hex digits).

    Returns the full hash. Raises :class:`CheckpointError` on a mismatch (the caller deletes the file).
    """
    actual = sha256sum(path)
    if expected:
        expected = expected.lower()
        if not _HEX.match(expected):
            raise CheckpointError(f'invalid sha256 {expected!r} (need 8-64 lower-case hex digits)')
        if not actual.startswith(expected):
            raise CheckpointError(
                f'sha256 mismatch for {osp.basename(path)}: expected {expected}, got {actual}. The file is '
                'corrupted, truncated or not the released one; it was refused and removed. Download it again.')
    return actual


def check_archive(path: str) -> None:
    """Structural integrity check used when no hash is known.

    Checkpoints written by ``torch.save`` (since 1.6) and ``torch.jit.save`` are zip archives whose
    members carry CRC-32s, so truncation and bit flips are caught. Legacy pickle files have no such
    check; they are accepted here and fail later, with a clear message, if they are damaged.
    """
    with open(path, 'rb') as f:
        magic = f.read(4)
    if magic[:2] == b'PK':
        try:
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise CheckpointError(f'{osp.basename(path)} is not a complete zip archive ({e}): the file is '
                                  'truncated or corrupted; it was removed. Download it again.') from e
        if bad is not None:
            raise CheckpointError(f'{osp.basename(path)}: member {bad} fails its CRC check: the file is '
                                  'corrupted; it was removed. Download it again.')
    elif magic[:1] == b'<' or magic.lower().startswith(b'<!do') or magic.lower().startswith(b'<htm'):
        raise CheckpointError(f'{osp.basename(path)} is an HTML page, not a checkpoint (Google Drive and Baidu '
                              'links need a browser); it was removed.')


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def download_file(url: str, dest: str, sha256: Optional[str] = None, progress: bool = True,
                  timeout: float = 60.0, manual_hint: str = '') -> str:
    """Download ``url`` to ``dest`` (resuming ``dest + '.part'``), verify it and move it into place.

    Args:
        url: http(s) or file URL.
        dest: final path; its directory is created.
        sha256: expected full hash or prefix; None to only check archive integrity.
        progress: show a tqdm progress bar.
        timeout: socket timeout in seconds.
        manual_hint: appended to network errors (where to fetch the file by hand).

    Returns:
        ``dest``.
    """
    os.makedirs(osp.dirname(osp.abspath(dest)), exist_ok=True)
    part = dest + '.part'
    have = osp.getsize(part) if osp.exists(part) else 0
    headers = {'User-Agent': 'mmlk-checkpoint-downloader'}
    if have:
        headers['Range'] = f'bytes={have}-'
    hint = f' {manual_hint}' if manual_hint else ''
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            # The partial file already holds every byte: nothing left to fetch, verify it below.
            resp = None
        else:
            raise CheckpointError(f'could not download {url}: HTTP {e.code} {e.reason}.{hint}') from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, 'reason', e)
        raise CheckpointError(f'could not download {url} ({reason}); are you offline?{hint}') from e

    total = None
    if resp is not None:
        with resp:
            status = getattr(resp, 'status', 200)
            if status == 206 and have:
                mode = 'ab'
                crange = resp.headers.get('Content-Range', '')
                m = re.search(r'/(\d+)$', crange)
                total = int(m.group(1)) if m else None
            else:
                mode, have = 'wb', 0  # the server ignored the range: start over
                length = resp.headers.get('Content-Length')
                total = int(length) if length is not None else None
            if 'text/html' in (resp.headers.get('Content-Type') or ''):
                _remove(part)
                raise CheckpointError(f'{url} returned an HTML page instead of a checkpoint (Google Drive and '
                                      f'Baidu need a browser).{hint}')
            bar = None
            if progress:
                try:
                    from tqdm import tqdm
                    bar = tqdm(total=total, initial=have, unit='B', unit_scale=True, unit_divisor=1024,
                               desc=osp.basename(dest), leave=False)
                except ImportError:
                    bar = None
            got = have
            try:
                with open(part, mode) as f:
                    while True:
                        block = resp.read(CHUNK)
                        if not block:
                            break
                        f.write(block)
                        got += len(block)
                        if bar is not None:
                            bar.update(len(block))
            except (OSError, urllib.error.URLError, ConnectionError) as e:
                raise CheckpointError(f'download of {url} interrupted after {got} bytes ({e}); run the same '
                                      f'command again to resume from {part}.') from e
            finally:
                if bar is not None:
                    bar.close()
            if total is not None and got < total:
                raise CheckpointError(f'download of {url} interrupted after {got} of {total} bytes; run the '
                                      f'same command again to resume from {part}.')
    try:
        digest = check_sha256(part, sha256)
        if not sha256:
            check_archive(part)
    except CheckpointError:
        _remove(part)
        raise
    os.replace(part, dest)
    write_pin(dest, digest)
    return dest


@contextlib.contextmanager
def download_lock(dest: str) -> Iterator[None]:
    """Serialise downloads of one file across processes (e.g. every rank of a distributed job calls
    ``init_weights``): an inter-process lock in ``<cache>/.locks``. ``filelock`` comes with torch."""
    try:
        from filelock import FileLock
    except ImportError:  # pragma: no cover - torch depends on filelock
        yield
        return
    lock_dir = osp.join(osp.dirname(osp.abspath(dest)), '.locks')
    os.makedirs(lock_dir, exist_ok=True)
    with FileLock(osp.join(lock_dir, osp.basename(dest) + '.lock')):
        yield


def pin_path(path: str) -> str:
    return path + '.sha256'


def write_pin(path: str, digest: str) -> None:
    """Record the hash of a verified file next to it (trust on first download for entries without one)."""
    tmp = pin_path(path) + '.tmp'
    with open(tmp, 'w') as f:
        f.write(digest + '\n')
    os.replace(tmp, pin_path(path))


def read_pin(path: str) -> Optional[str]:
    try:
        with open(pin_path(path)) as f:
            value = f.read().strip().lower()
    except OSError:
        return None
    return value if _HEX.match(value) else None


def verify_cached(path: str, sha256: Optional[str]) -> None:
    """Re-check a cached file against the registry hash or, failing that, the hash pinned at download.

    A mismatch removes the file (and its pin) and raises: the cache keeps nothing it cannot vouch for.
    """
    expected = sha256 or read_pin(path)
    if not expected:
        return
    try:
        check_sha256(path, expected)
    except CheckpointError:
        _remove(path)
        _remove(pin_path(path))
        raise
