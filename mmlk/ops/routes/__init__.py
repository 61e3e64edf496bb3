"""Every route of :func:`mmlk.ops.dwconv2d`, one module each; importing this package registers them all.

Each module builds its :class:`mmlk.ops.route_table.Route` and passes it to :func:`mmlk.ops.route_table.register`.
Modules are found by listing this package, so a new route is a new file here and nothing else (see
``docs/architecture.md``, "How to add a route").
"""
import importlib
import pkgutil

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f'{__name__}.{_info.name}')
