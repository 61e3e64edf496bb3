"""Import ``mmlk.ops`` from this checkout, for the tools that only need the op (gpu_check, benchmarks).

``import mmlk`` needs only torch when mmengine is absent (it then skips its registrations, see
``mmlk/__init__.py``), so this just puts the checkout first on ``sys.path`` and imports the op package; a bare
GPU machine with torch + triton runs the tools from a checkout without installing anything.

Usage (from any tool)::

    from ops_loader import load_ops
    ops = load_ops()          # the mmlk.ops module
    ops.dwconv2d(x, w)
"""
import importlib
import os.path as osp
import sys
from types import ModuleType

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_ops(repo_root: str = REPO_ROOT) -> ModuleType:
    """Return ``mmlk.ops``, preferring the checkout at ``repo_root`` over an installed mmlk."""
    if 'mmlk' not in sys.modules and repo_root not in sys.path:
        sys.path.insert(0, repo_root)
    return importlib.import_module('mmlk.ops')
