"""Fetching checkpoints: resumable HTTP downloads, sha256 verification, atomic moves into the cache.

A download goes to ``<cache>/<file>.part``; an interrupted transfer leaves that partial file and the next
attempt continues it with an HTTP ``Range`` request (a server answering with another range restarts it).
Only a complete file whose hash matches (or, without a known hash, whose whole structure checks out: zip
CRCs, or a legacy pickle read to its end) is moved into place with ``os.replace`` and pinned, so the cache
never holds a half-written or unverified checkpoint under its final name.

Downloads are bounded: by the size checkpoints.yaml records or the server's Content-Length, else by
``$MMLK_DOWNLOAD_MAX_BYTES`` (4 GiB); and a transfer receiving less than 64 KiB in
``$MMLK_DOWNLOAD_STALL_TIMEOUT`` seconds (60) is stopped, keeping the partial file for a later resume.
"""
import contextlib
import hashlib
import http.client
import os
import os.path as osp
import re
import time
import urllib.error
import urllib.request
from typing import Iterator, Optional

from .errors import CheckpointError
from .reader import check_file

CHUNK = 1 << 20
#: Defaults of the download limits (see :func:`default_max_bytes`, :func:`default_stall_timeout`).
DEFAULT_MAX_BYTES = 4 << 30
DEFAULT_STALL_TIMEOUT = 60.0
#: A download that receives less than this within the stall timeout counts as stalled.
STALL_MIN_BYTES = 64 << 10
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
    """Structural integrity check used when no hash is known (see :func:`.reader.check_file`).

    Zip archives (``torch.save`` since 1.6, ``torch.jit.save``) must pass their CRC-32s; legacy pickle
    files, which carry no checksum, must unpickle to the end under the restricted reader. Anything else
    (HTML pages, text, empty files) is refused with a message naming what it is.
    """
    check_file(path)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _env_number(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value == '':
        return default
    try:
        number = float(value)
    except ValueError:
        raise CheckpointError(f'{name}={value!r} is not a number; unset it or give a number') from None
    if number <= 0:
        raise CheckpointError(f'{name}={value!r} must be positive')
    return number


def default_max_bytes() -> int:
    """Size limit for a download whose size neither the registry nor the server states
    (``$MMLK_DOWNLOAD_MAX_BYTES``, default 4 GiB: the largest released file is about 1.4 GB)."""
    return int(_env_number('MMLK_DOWNLOAD_MAX_BYTES', DEFAULT_MAX_BYTES))


def default_stall_timeout() -> float:
    """Seconds a download may go without receiving ``STALL_MIN_BYTES`` (``$MMLK_DOWNLOAD_STALL_TIMEOUT``)."""
    return _env_number('MMLK_DOWNLOAD_STALL_TIMEOUT', DEFAULT_STALL_TIMEOUT)


class _Restart(Exception):
    """The partial file cannot be continued (the server sent other bytes than asked for)."""


def _open(url: str, have: int, timeout: float, hint: str):
    headers = {'User-Agent': 'mmlk-checkpoint-downloader'}
    if have:
        headers['Range'] = f'bytes={have}-'
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            return None  # the partial file already holds every byte: nothing left to fetch, verify it
        raise CheckpointError(f'could not download {url}: HTTP {e.code} {e.reason}.{hint}') from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, 'reason', e)
        raise CheckpointError(f'could not download {url} ({reason}); are you offline?{hint}') from e


def _stalled(url: str, got: int, part: str, stall_timeout: float) -> str:
    return (f'download of {url} stalled: less than {STALL_MIN_BYTES // 1024} KiB in {stall_timeout:g} s (at '
            f'{got} bytes). Run the same command again to resume from {part}, or allow longer stalls with '
            '--stall-timeout / MMLK_DOWNLOAD_STALL_TIMEOUT.')


def _transfer(url: str, part: str, expected_size: Optional[int], max_bytes: int, stall_timeout: float,
              timeout: float, progress: bool, hint: str) -> None:
    """One HTTP request appending to (or restarting) ``part``; raises on anything short of the full body."""
    have = osp.getsize(part) if osp.exists(part) else 0
    resp = _open(url, have, min(timeout, stall_timeout), hint)
    if resp is None:
        return
    with resp:
        status = getattr(resp, 'status', 200)
        if status == 206 and have:
            m = re.match(r'\s*bytes\s+(\d+)-\d+/(\d+|\*)', resp.headers.get('Content-Range', ''))
            if not m or int(m.group(1)) != have:
                # Appending bytes from another offset would corrupt the file: start over instead.
                raise _Restart(f'asked for bytes {have}- but the server sent '
                               f'{resp.headers.get("Content-Range")!r}')
            mode = 'ab'
            total = int(m.group(2)) if m.group(2) != '*' else None
        else:
            mode, have = 'wb', 0  # the server ignored the range: start over
            length = resp.headers.get('Content-Length')
            total = int(length) if length is not None and length.isdigit() else None
        if 'text/html' in (resp.headers.get('Content-Type') or ''):
            _remove(part)
            raise CheckpointError(f'{url} returned an HTML page instead of a checkpoint (Google Drive and '
                                  f'Baidu need a browser).{hint}')
        if expected_size is not None and total is not None and total != expected_size:
            _remove(part)
            raise CheckpointError(f'{url} announces {total} bytes but checkpoints.yaml expects {expected_size}: '
                                  f'not the released file. Nothing was kept.{hint}')
        limit = expected_size if expected_size is not None else total if total is not None else max_bytes
        if expected_size is None and limit > max_bytes:
            _remove(part)
            raise CheckpointError(f'{url} announces {limit} bytes, more than the download limit of {max_bytes} '
                                  'bytes; raise it with --max-size or MMLK_DOWNLOAD_MAX_BYTES if the file is '
                                  'really that large.')
        bar = None
        if progress:
            try:
                from tqdm import tqdm
                bar = tqdm(total=total, initial=have, unit='B', unit_scale=True, unit_divisor=1024,
                           desc=osp.basename(part[:-len('.part')]), leave=False)
            except ImportError:
                bar = None
        # read1 returns as soon as some bytes arrived, so a server trickling bytes cannot keep one
        # read call (and the stall check) waiting forever.
        read = getattr(resp, 'read1', resp.read)
        got = have
        window_start, window_bytes = time.monotonic(), 0
        try:
            with open(part, mode) as f:
                while True:
                    block = read(CHUNK)
                    if not block:
                        break
                    f.write(block)
                    got += len(block)
                    if bar is not None:
                        bar.update(len(block))
                    if got > limit:
                        f.close()
                        _remove(part)
                        if mode == 'ab':
                            # More bytes than the announced size after a Range request: the server sent
                            # another range than it claims. Start over from byte 0.
                            raise _Restart(f'the server sent more than the {limit} bytes it announced')
                        what = ('the size in checkpoints.yaml' if expected_size is not None else
                                'its Content-Length' if total is not None else
                                'the download limit (--max-size / MMLK_DOWNLOAD_MAX_BYTES)')
                        raise CheckpointError(f'download of {url} exceeded {limit} bytes, {what}; it was stopped '
                                              f'and removed.{hint}')
                    window_bytes += len(block)
                    now = time.monotonic()
                    if window_bytes >= STALL_MIN_BYTES:
                        window_start, window_bytes = now, 0
                    elif now - window_start > stall_timeout:
                        raise CheckpointError(_stalled(url, got, part, stall_timeout))
        except TimeoutError as e:  # no byte at all within the (stall-capped) socket timeout
            raise CheckpointError(_stalled(url, got, part, stall_timeout)) from e
        except (OSError, urllib.error.URLError, ConnectionError, http.client.HTTPException) as e:
            raise CheckpointError(f'download of {url} interrupted after {got} bytes ({e}); run the same '
                                  f'command again to resume from {part}.') from e
        finally:
            if bar is not None:
                bar.close()
        if total is not None and got < total:
            raise CheckpointError(f'download of {url} interrupted after {got} of {total} bytes; run the '
                                  f'same command again to resume from {part}.')


def download_file(url: str, dest: str, sha256: Optional[str] = None, progress: bool = True,
                  timeout: float = 60.0, manual_hint: str = '', expected_size: Optional[int] = None,
                  max_bytes: Optional[int] = None, stall_timeout: Optional[float] = None) -> str:
    """Download ``url`` to ``dest`` (resuming ``dest + '.part'``), verify it and move it into place.

    Args:
        url: http(s) URL. (``file://`` sources are read in place by :func:`.loading.resolve_checkpoint`.)
        dest: final path; its directory is created.
        sha256: expected full hash or prefix; None to check the file's whole structure instead.
        progress: show a tqdm progress bar.
        timeout: socket timeout in seconds (capped by ``stall_timeout``).
        manual_hint: appended to network errors (where to fetch the file by hand).
        expected_size: size in bytes from checkpoints.yaml, if known: the download must be exactly that.
        max_bytes: limit when neither ``expected_size`` nor a Content-Length is known; defaults to
            :func:`default_max_bytes`.
        stall_timeout: abort (keeping the partial file) when less than ``STALL_MIN_BYTES`` arrive in this
            many seconds; defaults to :func:`default_stall_timeout`.

    Returns:
        ``dest``.
    """
    if not re.match(r'^https?://', url, flags=re.I):
        raise CheckpointError(f'cannot download {url}: only http(s) URLs are fetched (local files and file:// '
                              'URLs are read in place).')
    max_bytes = int(max_bytes) if max_bytes is not None else default_max_bytes()
    stall_timeout = float(stall_timeout) if stall_timeout is not None else default_stall_timeout()
    hint = f' {manual_hint}' if manual_hint else ''
    part = dest + '.part'
    for path, what in ((dest, 'cache path'), (part, 'partial download path')):
        if osp.isdir(path):
            raise CheckpointError(f'the {what} {path} is a directory; move it away or choose another cache '
                                  'directory (MMLK_CACHE_DIR / --cache-dir).')
    os.makedirs(osp.dirname(osp.abspath(dest)), exist_ok=True)
    for attempt in range(2):
        resumed = osp.exists(part) and osp.getsize(part) > 0
        try:
            _transfer(url, part, expected_size, max_bytes, stall_timeout, timeout, progress, hint)
        except _Restart:
            _remove(part)
            _transfer(url, part, expected_size, max_bytes, stall_timeout, timeout, progress, hint)
            resumed = False
        try:
            digest = check_sha256(part, sha256)
            if not sha256:
                check_archive(part)
        except CheckpointError:
            # Never keep (or pin) what failed. A resumed file may hold a bad earlier piece or bytes a
            # server sent for the wrong range: fetch it once more from the start before giving up.
            _remove(part)
            if resumed and attempt == 0:
                continue
            raise
        break
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
