"""Reading checkpoint files without running code from them.

* ``torch.save`` files (zip or legacy pickle) are read with ``torch.load(weights_only=True)``, whose
  unpickler only builds tensors and plain containers. A few data containers are allowed on top:
  ``argparse.Namespace`` (the DeiT/ConvNeXt-style training scripts of both upstream repositories store
  ``args``) and the numpy arrays / ``HistoryBuffer`` of mmengine's own checkpoints; unpickling them only
  rebuilds arrays and sets attributes. A file that needs anything else is refused with the list of globals
  it asks for; ``weights_only=False`` is never used.
* TorchScript archives (a family's fused ``*.pt`` release) are read by :func:`read_torchscript_tensors`, a restricted
  unpickler over the archive's ``data.pkl``: module objects become inert records and tensors are rebuilt
  from the raw ``data/<n>`` entries; the archive's ``code/`` is never compiled or run. Each member's
  declared size is compared with the tensors ``data.pkl`` declares before it is read.
* Before any of that, the container is sniffed (empty files, HTML pages, text and unknown bytes get a
  message saying what they are) and every zip member's CRC-32 is checked in one streaming pass, so a
  flipped bit or a truncated archive never loads silently.
"""
import argparse
import io
import os.path as osp
import pickle
import struct
import sys
import zipfile
from collections import OrderedDict
from typing import Any, Dict, Tuple

import torch

from .errors import CheckpointError

#: Extra globals allowed on top of torch's weights_only allow-list (see the module docstring).
SAFE_GLOBALS: list = [argparse.Namespace]


def _safe_globals() -> list:
    """SAFE_GLOBALS plus the data containers of mmengine's own checkpoints (``message_hub``).

    Checkpoints written by mmengine's Runner (e.g. an mmlk ImageNet run used to initialise a downstream
    model) keep logging state: numpy arrays, scalars and dtypes, ``HistoryBuffer`` and its statistics
    methods. :func:`mmlk.checkpoint.mmengine_compat.safe_globals` is the one list of what that allows.
    Only what the process-wide allow-list lacks is returned: leaving a ``torch.serialization.safe_globals``
    context removes its entries from that list, so passing entries ``import mmlk`` already installed would
    silently uninstall them for every later ``torch.load`` (the host tools' among them).
    """
    from mmlk.checkpoint.mmengine_compat import safe_globals
    installed = torch.serialization.get_safe_globals()
    return [g for g in list(SAFE_GLOBALS) + safe_globals() if g not in installed]


def is_torchscript(path: str) -> bool:
    """True for a TorchScript archive (a zip holding ``<root>/code/`` or ``<root>/constants.pkl``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    return any(n.count('/') >= 1 and (n.split('/', 1)[1].startswith('code/') or n.endswith('/constants.pkl'))
               for n in names)


def _sniff_coreml(path: str) -> bool:
    return path.lower().endswith(('.mlmodel', '.mlpackage'))


# --------------------------------------------------------------------------- structure checks
#: A compressed zip member larger than this, inflating more than ``_MAX_INFLATE_RATIO`` times, is refused
#: before anything reads it: ``torch.save`` / ``torch.jit.save`` store their members uncompressed, so
#: only a crafted archive (a "zip bomb") has them.
_MAX_INFLATED_MEMBER = 64 << 20
_MAX_INFLATE_RATIO = 50


def sniff_container(path: str) -> str:
    """``'zip'`` or ``'pickle'`` from the file's first bytes; anything else raises a one-line error.

    Names what the file is instead (empty, HTML page, text, Git LFS pointer, unknown bytes), so a wrong
    download is not reported as a checkpoint that "needs code to run" or as a bare ``KeyError``.
    """
    name = osp.basename(path)
    size = osp.getsize(path)
    with open(path, 'rb') as f:
        head = f.read(512)
    if size == 0:
        raise CheckpointError(f'{name} is empty (0 bytes): a download or save was interrupted. Delete it and '
                              'download or save it again.')
    if head[:4] in (b'PK\x03\x04', b'PK\x05\x06'):
        return 'zip'
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:  # pickle protocol 2-5 (torch uses 2)
        return 'pickle'
    text = head.lstrip().lower()
    if text.startswith((b'<!doctype html', b'<html', b'<head', b'<?xml', b'<body')) or b'<html' in text[:200]:
        raise CheckpointError(f'{name} is an HTML page ({size} bytes), not a checkpoint: the link led to a web '
                              'page (Google Drive and Baidu need a browser). Download the file by hand.')
    if head.startswith(b'version https://git-lfs'):
        raise CheckpointError(f'{name} is a Git LFS pointer ({size} bytes), not the checkpoint: run '
                              '`git lfs pull` in its repository or download the file itself.')
    try:
        decoded = head.decode('utf-8')
        is_text = all(c.isprintable() or c in '\r\n\t' for c in decoded)
    except UnicodeDecodeError:
        is_text = False
    if is_text:
        first = decoded.strip().splitlines()[0][:40] if decoded.strip() else ''
        raise CheckpointError(f'{name} is a text file ({size} bytes, starting {first!r}), not a PyTorch '
                              'checkpoint. Check the path, or download the checkpoint again.')
    raise CheckpointError(f'{name} is not a PyTorch checkpoint (unknown format, first bytes {head[:8].hex()}): '
                          'check the path, or download the file again.')


def check_zip(path: str) -> None:
    """Refuse zip bombs, then check every member's CRC-32 (one streaming pass, no member held in memory).

    Catches truncation and flipped bits in ``torch.save`` (>= 1.6) and TorchScript files, which torch
    itself does not check: one flipped bit inside a tensor would otherwise load silently.
    """
    name = osp.basename(path)
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if (info.compress_type != zipfile.ZIP_STORED and info.file_size > _MAX_INFLATED_MEMBER
                        and info.file_size > _MAX_INFLATE_RATIO * max(info.compress_size, 1)):
                    raise CheckpointError(
                        f'{name}: member {info.filename} inflates from {info.compress_size} to {info.file_size} '
                        'bytes; PyTorch never writes compressed members, so the file was crafted or '
                        're-packed. It was not read; use the original release.')
            bad = zf.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError) as e:
        raise CheckpointError(f'{name} is not a complete zip archive ({e}): the file is truncated or '
                              'corrupted. Delete it and download or save it again.') from e
    if bad is not None:
        raise CheckpointError(f'{name}: member {bad} fails its CRC check: the file is corrupted. Delete it and '
                              'download or save it again.')


def check_file(path: str) -> str:
    """Validate a checkpoint's whole structure without keeping its contents; returns the container kind.

    Zip files get :func:`check_zip`; legacy pickles are read to the end with the restricted reader
    (they carry no checksum, so only a full read shows truncation). Raises :class:`CheckpointError`.
    """
    kind = sniff_container(path)
    if kind == 'zip':
        check_zip(path)
    else:
        read_checkpoint(path)
    return kind


def read_checkpoint(path: str, map_location: Any = 'cpu') -> Tuple[Any, str]:
    """Read ``path`` safely. Returns ``(object, container)`` with container ``'torchscript'`` or ``'pickle'``.

    The file's container is sniffed first and zip members are CRC-checked before anything is unpickled.
    """
    if not osp.isfile(path):
        what = 'is a directory, not a checkpoint file' if osp.isdir(path) else 'does not exist'
        raise CheckpointError(f'checkpoint file {path} {what}')
    if _sniff_coreml(path):
        raise CheckpointError(f'{osp.basename(path)} is a Core ML model (for on-device inference); it holds no '
                              'PyTorch weights. Use the .pth release of the same model instead.')
    if sniff_container(path) == 'zip':
        check_zip(path)
        if is_torchscript(path):
            return read_torchscript_tensors(path, map_location), 'torchscript'
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        needed = []
        try:
            needed = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # legacy or damaged files: the torch message below still explains
            pass
        if not needed and 'GLOBAL' not in str(e):
            raise _damaged(path, e) from e
        what = f' It needs: {", ".join(needed)}.' if needed else ''
        raise CheckpointError(
            f'refusing to load {osp.basename(path)}: it contains Python objects that can only be restored by '
            f'running code from the file (torch.load(weights_only=False)), which mmlk never does for '
            f'pretrained weights.{what} If you trust the file, extract its state dict yourself in a separate '
            f'process and save it with torch.save(state_dict, ...). (torch: {str(e).splitlines()[0]})') from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError, IndexError, struct.error) as e:
        raise _damaged(path, e) from e
    return obj, 'pickle'


def _damaged(path: str, e: BaseException) -> CheckpointError:
    detail = str(e).splitlines()[0] if str(e) else ''
    return CheckpointError(f'cannot read {osp.basename(path)}: the file is truncated, corrupted or not a '
                           f'PyTorch checkpoint ({type(e).__name__}{": " + detail if detail else ""}). '
                           'Delete it and download or save it again.')


# --------------------------------------------------------------------------- TorchScript archives
class ScriptObject:
    """Inert stand-in for a TorchScript module/class instance found in ``data.pkl``."""

    qualified_name = '?'

    def __setstate__(self, state: Any) -> None:
        self.__dict__['_state'] = state

    def state(self) -> Dict[str, Any]:
        st = self.__dict__.get('_state')
        return st if isinstance(st, dict) else {}


class _StorageType:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


def _storage_dtypes() -> Dict[str, torch.dtype]:
    names = {
        'FloatStorage': torch.float32, 'DoubleStorage': torch.float64, 'HalfStorage': torch.float16,
        'BFloat16Storage': torch.bfloat16, 'LongStorage': torch.int64, 'IntStorage': torch.int32,
        'ShortStorage': torch.int16, 'CharStorage': torch.int8, 'ByteStorage': torch.uint8,
        'BoolStorage': torch.bool,
    }
    return names


class _ScriptUnpickler(pickle.Unpickler):
    """Builds tensors and inert records only; any other global is refused."""

    def __init__(self, data: bytes, zf: zipfile.ZipFile, root: str, map_location: Any) -> None:
        super().__init__(io.BytesIO(data))
        self._zf = zf
        self._root = root
        self._map_location = map_location
        self._storages: Dict[str, torch.Tensor] = {}
        self._classes: Dict[str, type] = {}
        self._dtypes = _storage_dtypes()

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith('__torch__'):
            qual = f'{module}.{name}'
            if qual not in self._classes:
                self._classes[qual] = type(name, (ScriptObject,), {'qualified_name': qual})
            return self._classes[qual]
        if module == 'torch._utils' and name == '_rebuild_tensor_v2':
            return self._rebuild_tensor
        if module == 'torch._utils' and name == '_rebuild_parameter':
            return lambda data, requires_grad, hooks: data
        if module == 'torch' and name in self._dtypes:
            return _StorageType(self._dtypes[name])
        if module == 'collections' and name == 'OrderedDict':
            return OrderedDict
        raise pickle.UnpicklingError(f'TorchScript archive references {module}.{name}, which mmlk does not '
                                     'load (only tensors and module records are read)')

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == 'storage'):
            raise pickle.UnpicklingError(f'unsupported persistent id {pid!r} in TorchScript archive')
        _, stype, key, _location, numel = pid[:5]
        if not isinstance(stype, _StorageType):
            raise pickle.UnpicklingError(f'unsupported storage type {stype!r} in TorchScript archive')
        if key not in self._storages:
            member = f'{self._root}data/{key}'
            # Compare the member's declared size with what the pickle declares before reading it, so a
            # small archive cannot make the reader inflate gigabytes into memory.
            expected = int(numel) * torch.empty((), dtype=stype.dtype).element_size()
            try:
                declared = self._zf.getinfo(member).file_size
            except KeyError:
                raise pickle.UnpicklingError(f'storage {key}: member {member} is missing') from None
            if declared != expected:
                raise pickle.UnpicklingError(f'storage {key}: member {member} declares {declared} bytes, but its '
                                             f'tensors need {expected}')
            raw = self._zf.read(member)
            flat = torch.frombuffer(bytearray(raw), dtype=stype.dtype) if raw else torch.empty(0, dtype=stype.dtype)
            if flat.numel() != numel:
                raise pickle.UnpicklingError(f'storage {key}: expected {numel} elements, found {flat.numel()}')
            self._storages[key] = flat
        return self._storages[key]

    @staticmethod
    def _rebuild_tensor(storage: torch.Tensor, offset: int, size: Tuple[int, ...], stride: Tuple[int, ...],
                        requires_grad: bool = False, hooks: Any = None, metadata: Any = None) -> torch.Tensor:
        return storage.as_strided(tuple(size), tuple(stride), offset).clone()


def read_torchscript_tensors(path: str, map_location: Any = 'cpu') -> 'OrderedDict[str, torch.Tensor]':
    """Flat ``{dotted.name: tensor}`` of every tensor attribute of a TorchScript archive's module tree.

    Equivalent to ``torch.jit.load(path).state_dict()`` for modules whose tensors are parameters and
    buffers, but without compiling or running the archive's code.
    """
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise CheckpointError(f'{osp.basename(path)} is not a complete zip archive ({e}); download it again') from e
    with zf:
        pkl = [n for n in zf.namelist() if n.endswith('/data.pkl') and n.count('/') == 1]
        if len(pkl) != 1:
            raise CheckpointError(f'{osp.basename(path)}: no unique <root>/data.pkl in the TorchScript archive')
        root = pkl[0][:-len('data.pkl')]
        if f'{root}byteorder' in zf.namelist():
            order = zf.read(f'{root}byteorder').decode().strip()
            if order != sys.byteorder:
                raise CheckpointError(f'{osp.basename(path)} was written on a {order}-endian machine; '
                                      f'this one is {sys.byteorder}-endian')
        if zf.getinfo(pkl[0]).file_size > _MAX_INFLATED_MEMBER:
            raise CheckpointError(f'{osp.basename(path)}: {pkl[0]} declares {zf.getinfo(pkl[0]).file_size} bytes; '
                                  'a module record is a few MB at most, so the archive was not read')
        try:
            top = _ScriptUnpickler(zf.read(pkl[0]), zf, root, map_location).load()
        except (pickle.UnpicklingError, KeyError, zipfile.BadZipFile, EOFError, ValueError) as e:
            raise CheckpointError(f'cannot read the tensors of TorchScript archive {osp.basename(path)}: {e}') from e
    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()

    def walk(obj: Any, prefix: str) -> None:
        for name, value in obj.state().items():
            if not isinstance(name, str) or name.startswith('_'):
                continue
            if isinstance(value, torch.Tensor):
                out[prefix + name] = value.to(map_location) if map_location not in (None, 'cpu') else value
            elif isinstance(value, ScriptObject):
                walk(value, f'{prefix}{name}.')

    if not isinstance(top, ScriptObject):
        raise CheckpointError(f'{osp.basename(path)}: the TorchScript archive does not hold a module')
    walk(top, '')
    return out
