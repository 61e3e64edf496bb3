"""The one locator of mmlk's non-Python files: ``configs/``, ``checkpoints.yaml``, ``tools/``, ``model-index.yml``.

Precedence, first match wins:

1. an environment variable naming the file, for the resources that have one (:data:`ENV_OVERRIDES`:
   ``MMLK_CHECKPOINTS_YAML``), so a user can point at a private table without touching the install;
2. the source checkout the ``mmlk`` package was imported from (recognised by ``setup.py`` next to it, so a
   stray top-level ``configs/`` in site-packages is never taken for mmlk's); an editable install is a
   checkout, so edits take effect without re-installing;
3. the copies an installed wheel carries under ``mmlk/.mim/`` (the layout mmengine's
   ``_base_ = ['mmlk::...']`` lookup expects; ``setup.py`` puts them there).

Python sources are not resources: the op's kernels are the package ``mmlk.kernels`` and the op's measured
table is package data of ``mmlk.ops``; both are found by the import system.
"""
import os
import os.path as osp

PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
_CHECKOUT_ROOT = osp.dirname(PACKAGE_DIR)
ENV_OVERRIDES = {'checkpoints.yaml': 'MMLK_CHECKPOINTS_YAML'}


def resource_path(name: str) -> str:
    """Absolute path of a packaged resource, e.g. ``resource_path('checkpoints.yaml')`` (module docstring).

    Raises:
        FileNotFoundError: when no location in the precedence has it.
    """
    env = ENV_OVERRIDES.get(name)
    if env and os.environ.get(env):
        return os.environ[env]
    in_checkout = osp.join(_CHECKOUT_ROOT, name)
    if osp.exists(in_checkout) and osp.isfile(osp.join(_CHECKOUT_ROOT, 'setup.py')):
        return in_checkout
    installed = osp.join(PACKAGE_DIR, '.mim', name)
    if osp.exists(installed):
        return installed
    hint = f' or set {env}' if env else ''
    raise FileNotFoundError(f'mmlk resource {name!r} is missing from both {in_checkout} and {installed}; '
                            f'reinstall mmlk (pip install .) so its data files are packaged{hint}')
