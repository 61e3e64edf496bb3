"""Packaging for mmlk.

The top-level ``configs/``, ``kernels/`` and ``checkpoints.yaml`` belong to the package at run time:
configs are looked up as ``mmlk::path/to/config.py`` (mim style, through ``mmlk/.mim``) and the weights
registry is ``checkpoints.yaml`` (both found by :func:`mmlk.utils.resource_path`). For an editable install
``mmlk/.mim`` holds symlinks to them; for a wheel or ``pip install .`` copies.

``kernels/`` is also the Python package ``mmlk.kernels`` (Triton kernel sources, compiled at run time):
``package_dir`` installs it under that name, and in a checkout or an editable install the committed link
``mmlk/kernels -> ../kernels`` makes the same import work. The name keeps clear of PyPI's ``kernels``.
"""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

#: Installed at the top of site-packages: makes `mmlk::` config bases resolve before `import mmlk`
#: (see _mmlk_host_integration.py).
PTH_FILE = 'mmlk-host-integration.pth'

HERE = osp.dirname(osp.abspath(__file__))
MIM_ITEMS = ('configs', 'kernels', 'checkpoints.yaml', 'tools', 'model-index.yml')


def version() -> str:
    scope: dict = {}
    with open(osp.join(HERE, 'mmlk', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def add_mim_extension() -> None:
    """Place configs, kernels, tools and checkpoints.yaml under ``mmlk/.mim``."""
    if 'develop' in sys.argv or 'editable_wheel' in sys.argv:
        mode = 'symlink'
    elif any(cmd in sys.argv for cmd in ('sdist', 'bdist_wheel', 'build', 'install', 'egg_info')):
        mode = 'copy'
    else:
        return
    mim_root = osp.join(HERE, 'mmlk', '.mim')
    os.makedirs(mim_root, exist_ok=True)
    for item in MIM_ITEMS:
        src = osp.join(HERE, item)
        dst = osp.join(mim_root, item)
        if not osp.exists(src):
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_root), dst)
        elif osp.isdir(src):
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            shutil.copyfile(src, dst)


class BuildPyWithPth(build_py):
    """build_py that also puts the ``.pth`` file at the root of the build (so of site-packages)."""

    def run(self) -> None:
        super().run()
        self.copy_file(osp.join(HERE, PTH_FILE), osp.join(self.build_lib, PTH_FILE), preserve_mode=False)


def read_requirements(name: str) -> list:
    with open(osp.join(HERE, 'requirements', name)) as f:
        return [ln.strip() for ln in f if ln.strip() and not ln.startswith('#')]


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='mmlk',
        version=version(),
        description='Large-kernel and re-parameterised CNN backbones (RepLKNet, RepNeXt) '
        'for mmpretrain, mmsegmentation and mmdetection',
        long_description=open(osp.join(HERE, 'README.md')).read() if osp.exists(osp.join(HERE, 'README.md')) else '',
        long_description_content_type='text/markdown',
        license='Apache-2.0',
        python_requires='>=3.9',
        # mmlk.kernels from the top-level kernels/ (not through the checkout's link, which builds need not follow)
        packages=find_packages(include=['mmlk', 'mmlk.*'], exclude=['mmlk.kernels']) + ['mmlk.kernels'],
        package_dir={'mmlk.kernels': 'kernels'},
        py_modules=['_mmlk_host_integration'],
        cmdclass={'build_py': BuildPyWithPth},
        include_package_data=True,
        package_data={'mmlk': ['.mim/**/*', '.mim/*', 'ops/*.json']},
        install_requires=['torch>=2.1', 'mmengine>=0.10', 'mmcv>=2.0,<2.2', 'pyyaml', 'tqdm'],
        extras_require={
            'all': ['mmdet>=3.0', 'mmsegmentation>=1.0', 'mmpretrain>=1.0', 'timm>=0.9', 'ftfy', 'regex'],
            'tests': read_requirements('tests.txt'),
        },
        zip_safe=False,
    )
