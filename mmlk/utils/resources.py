"""Where mmlk's non-Python files live: ``configs/``, ``kernels/``, ``checkpoints.yaml``, ``tools/``.

In a source checkout (also an editable install) they sit next to the ``mmlk`` package; in an
installed wheel ``setup.py`` puts copies under ``mmlk/.mim/`` (the layout mmengine's
``_base_ = ['mmlk::...']`` lookup expects). The checkout wins when both exist, so edits to the
repository take effect without re-installing.
"""
import os.path as osp

PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
_CHECKOUT_ROOT = osp.dirname(PACKAGE_DIR)


def resource_path(name: str) -> str:
    """Absolute path of a packaged resource, e.g. ``resource_path('checkpoints.yaml')``.

    Raises:
        FileNotFoundError: when neither the checkout nor the installed package has it.
    """
    in_checkout = osp.join(_CHECKOUT_ROOT, name)
    if osp.exists(in_checkout) and osp.isfile(osp.join(_CHECKOUT_ROOT, 'setup.py')):
        return in_checkout
    installed = osp.join(PACKAGE_DIR, '.mim', name)
    if osp.exists(installed):
        return installed
    raise FileNotFoundError(f'mmlk resource {name!r} is missing from both {in_checkout} and {installed}; '
                            'reinstall mmlk (pip install .) so its data files are packaged')
