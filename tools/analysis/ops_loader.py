"""Load ``mmlk.ops`` with torch (+ triton) alone, without mmengine / mmcv / the host libraries.

``import mmlk`` registers mmlk's models in mmengine's registries, so it needs the OpenMMLab stack; the op
package itself needs only torch. A bare GPU machine has only torch + triton + numpy, so the GPU check and the
tools that only touch the op load it through :func:`load_ops`: when the real ``mmlk`` package cannot be imported
(mmengine missing), a namespace-only ``mmlk`` module pointing at the source tree stands in for it, and
``mmlk.ops`` is imported beneath it unchanged.

Usage (from any tool)::

    from ops_loader import load_ops
    ops = load_ops()          # the mmlk.ops module
    ops.dwconv2d(x, w)
"""
import importlib
import importlib.util
import os.path as osp
import sys
import types
from types import ModuleType

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _stack_importable() -> bool:
    """Whether ``import mmlk`` can work here (it needs mmengine; a blocked or missing one means no)."""
    try:
        return importlib.util.find_spec('mmengine') is not None
    except (ImportError, ValueError):
        return False


def load_ops(repo_root: str = REPO_ROOT, force_standalone: bool = False) -> ModuleType:
    """Return ``mmlk.ops``, importing the full ``mmlk`` only when its dependencies are present.

    Args:
        repo_root: checkout holding ``mmlk/`` (ignored when an installed mmlk is importable).
        force_standalone: always use the namespace-only parent (what a bare GPU machine gets).
    """
    if 'mmlk.ops' in sys.modules:
        return sys.modules['mmlk.ops']
    if not force_standalone and 'mmlk' not in sys.modules and _stack_importable():
        if repo_root not in sys.path:
            sys.path.insert(0, repo_root)
        return importlib.import_module('mmlk.ops')
    pkg_dir = osp.join(repo_root, 'mmlk')
    if not osp.isfile(osp.join(pkg_dir, 'ops', '__init__.py')):
        raise ImportError(f'no mmlk/ops package under {repo_root}')
    if 'mmlk' not in sys.modules:
        # A bare parent package: mmlk.ops and its submodules import relative to it and need nothing else.
        parent = types.ModuleType('mmlk')
        parent.__path__ = [pkg_dir]  # type: ignore[attr-defined]
        parent.__file__ = osp.join(pkg_dir, '__init__.py')
        parent.__package__ = 'mmlk'
        sys.modules['mmlk'] = parent
    return importlib.import_module('mmlk.ops')
