"""Writing checkpoints atomically, with temporaries a later run finds and removes.

A converter killed mid-write (``kill -9``, out of memory) leaves its temporary file behind. Temporaries
are therefore named ``.<output name>.tmp-<host>-<pid>`` next to the output: the next write of the same
output removes those whose process is gone (and those of earlier mmlk versions, ``<name>.tmp-<pid>`` and
``.<name>.<random>.tmp``), while a concurrent writer's live temporary is left alone.
"""
import glob
import os
import os.path as osp
import re
import socket
from typing import Any, List, Optional

import torch

from .errors import CheckpointError


def _host() -> str:
    return re.sub(r'[^A-Za-z0-9_]', '_', socket.gethostname())[:32] or 'host'


def temporary_path(dst: str) -> str:
    """The temporary this process writes ``dst`` through."""
    return osp.join(osp.dirname(dst), f'.{osp.basename(dst)}.tmp-{_host()}-{os.getpid()}')


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftover from an earlier, failed attempt
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def remove_stale_temporaries(dst: str) -> List[str]:
    """Delete temporaries of ``dst`` left by killed writers on this host; returns the removed paths."""
    folder, base = osp.dirname(dst), osp.basename(dst)
    removed = []
    host = _host()
    for path in glob.glob(osp.join(glob.escape(folder), f'.{glob.escape(base)}.tmp-*')):
        m = re.fullmatch(re.escape(f'.{base}.tmp-') + r'(.+)-(\d+)', osp.basename(path))
        if m and m.group(1) == host and not _pid_alive(int(m.group(2))):
            removed.append(path)
    # Names used by mmlk before this scheme (convert.py: <dst>.tmp-PID; reparameterize.py: mkstemp).
    for path in glob.glob(osp.join(glob.escape(folder), f'{glob.escape(base)}.tmp-*')):
        m = re.fullmatch(re.escape(f'{base}.tmp-') + r'(\d+)', osp.basename(path))
        if m and not _pid_alive(int(m.group(1))):
            removed.append(path)
    removed += glob.glob(osp.join(glob.escape(folder), f'.{glob.escape(base)}.*.tmp'))
    for path in removed:
        try:
            os.remove(path)
        except OSError:
            pass
    return removed


def atomic_save(obj: Any, dst: str, src: Optional[str] = None, overwrite: bool = False) -> str:
    """``torch.save`` to ``dst`` through a temporary file and ``os.replace``.

    Refuses to write over ``src`` and, unless ``overwrite``, over an existing ``dst``; a ``dst`` that is a
    directory is refused up front. Returns the absolute ``dst``.
    """
    dst = osp.abspath(dst)
    if osp.isdir(dst):
        raise CheckpointError(f'the output {dst} is a directory; give a file path such as '
                              f'{osp.join(dst, "converted.pth")}')
    if src is not None and osp.exists(dst) and osp.samefile(src, dst):
        raise CheckpointError(f'refusing to write the output over the input {src}')
    if osp.exists(dst) and not overwrite:
        raise CheckpointError(f'{dst} exists; choose another output path or pass --overwrite')
    os.makedirs(osp.dirname(dst), exist_ok=True)
    remove_stale_temporaries(dst)
    tmp = temporary_path(dst)
    try:
        with open(tmp, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return dst
