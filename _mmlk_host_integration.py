"""Make ``_base_ = ['mmlk::...']`` resolve in any process where mmlk is installed, before ``import mmlk``.

mmengine resolves ``pkg::path`` config bases only for packages in ``mmengine.config.utils.MODULE2PACKAGE``,
and it reads a config's bases before the config's ``custom_imports`` runs, so a host library's own
``tools/train.py`` given a user config with an ``mmlk::`` base would fail (``import mmlk`` adds the entry,
too late). ``mmlk-host-integration.pth`` (installed next to this module in site-packages) imports this
module at interpreter start-up; it imports nothing else (no torch, no mmengine) and only puts a finder on
``sys.meta_path`` that adds ``'mmlk'`` to that table right after ``mmengine.config.utils`` is executed.
"""
import sys

_TARGET = 'mmengine.config.utils'


class _AddMmlkLoader:
    """Wraps the real loader of ``mmengine.config.utils``; registers mmlk after the module ran."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        register(module)

    def __getattr__(self, name):  # get_code, get_source, ... of the wrapped loader
        return getattr(self._loader, name)


class MmengineConfigFinder:
    """A meta-path finder that answers only for ``mmengine.config.utils`` (and only once)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, 'exec_module'):
                    spec.loader = _AddMmlkLoader(spec.loader)
                return spec
        return None


def register(module=None) -> None:
    """Add ``'mmlk'`` to mmengine's package table (``module``: ``mmengine.config.utils``)."""
    module = module if module is not None else sys.modules.get(_TARGET)
    table = getattr(module, 'MODULE2PACKAGE', None)
    if isinstance(table, dict):
        table.setdefault('mmlk', 'mmlk')


def install() -> None:
    if _TARGET in sys.modules:
        register()
    elif not any(isinstance(f, MmengineConfigFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MmengineConfigFinder())


install()
