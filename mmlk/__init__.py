"""mmlk: large-kernel and re-parameterised CNN backbones for OpenMMLab.

``import mmlk`` registers every mmlk class in the ``mmlk`` registry scope (and timm model names when
timm is installed). It deliberately imports none of mmdet, mmseg or mmpretrain. It also lets mmengine
checkpoints load under torch's ``weights_only=True`` (an exact allow-list, see
:mod:`mmlk.checkpoint.mmengine_compat`), so every host tool reads checkpoints written by a Runner.

Without mmengine (a bare GPU machine with torch + triton only) the package imports with none of that: only
:mod:`mmlk.ops` (and the kernels it launches) is usable then, and ``import mmlk.models`` fails with
mmengine's own ImportError.
"""
import importlib.util

from .version import __version__


def _mmengine_importable() -> bool:
    try:
        return importlib.util.find_spec('mmengine') is not None
    except (ImportError, ValueError):  # blocked by an import hook, or a broken partial install
        return False


if _mmengine_importable():
    from mmengine.config.utils import MODULE2PACKAGE

    # mmengine resolves `_base_ = ['pkg::path']` only for packages in this table; adding mmlk makes
    # `mmlk::replknet/...` work in any config loaded after `import mmlk` (mmlk's tools import it first).
    MODULE2PACKAGE.setdefault('mmlk', 'mmlk')
    from . import registry  # noqa: F401  (creates the scope before any class registers)
    from . import models  # noqa: F401
    from . import engine  # noqa: F401
    from . import checkpoint  # noqa: F401

    # Here rather than in mmlk's tools: `custom_imports=['mmlk']` then covers the host libraries' own
    # train/test scripts, init_model and inferencers too.
    checkpoint.safe_load.install()
    # `pkg::` config bases: mmengine re-reads the host's ~100 metafiles per base; once per process is enough
    from .utils import config_index
    config_index.install()

__all__ = ['__version__']
