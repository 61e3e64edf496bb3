"""`pip install .` (not editable) gives a working plugin: data files packaged, `mmlk::` configs resolve."""
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='module')
def installed_copy(tmp_path_factory):
    """Install a copy of the tracked sources into a private target directory (the repo stays untouched)."""
    tmp = tmp_path_factory.mktemp('pkg')
    src = tmp / 'src'
    files = subprocess.run(['git', 'ls-files', '-z'], cwd=REPO, capture_output=True, check=True).stdout
    for rel in files.decode().split('\0'):
        if rel and osp.isfile(osp.join(REPO, rel)):
            dst = src / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(osp.join(REPO, rel), dst)
    target = tmp / 'site'
    out = subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--no-build-isolation',
                          '--target', str(target), str(src)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return str(target)


def test_installed_copy_carries_configs_kernels_and_weights_registry(installed_copy):
    mim = osp.join(installed_copy, 'mmlk', '.mim')
    assert osp.isfile(osp.join(mim, 'checkpoints.yaml'))
    assert osp.isfile(osp.join(mim, 'configs', 'demo', 'upernet_replknet-mini_1xb8-300it_ade20k-mini-128x128.py'))
    assert any(name.endswith('.py') for name in os.listdir(osp.join(mim, 'kernels')))
    assert osp.isdir(osp.join(mim, 'configs', '_base_'))
    # The large-kernel op's measured dispatch table (without it 'auto' would silently stay on F.conv2d).
    assert osp.isfile(osp.join(installed_copy, 'mmlk', 'ops', 'dwconv_cpu_table.json'))


def test_mim_style_base_config_resolves_from_the_installed_copy(installed_copy, tmp_path):
    user_cfg = tmp_path / 'my_upernet.py'
    user_cfg.write_text("_base_ = ['mmlk::demo/upernet_replknet-mini_1xb8-300it_ade20k-mini-128x128.py']\n"
                        "model = dict(decode_head=dict(num_classes=3))\n")
    code = f'''
import mmlk
from mmengine.config import Config
from mmlk.utils import resource_path
assert mmlk.__file__.startswith({installed_copy!r}), mmlk.__file__
cfg = Config.fromfile({str(user_cfg)!r})
print(cfg.model.backbone.type, cfg.model.decode_head.num_classes)
print(resource_path('checkpoints.yaml').startswith({installed_copy!r}))
'''
    env = dict(os.environ, PYTHONPATH=installed_copy)
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=str(tmp_path),
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ['mmlk.RepLKNet', '3', 'True']


def test_every_shipped_config_loads_from_the_installed_copy(installed_copy, tmp_path):
    # Relative `_base_` paths, `mmdet::`/`mmpretrain::` bases and custom_imports must all resolve
    # from site-packages, away from the source checkout.
    code = f'''
import glob, os.path as osp
import mmlk
from mmengine.config import Config
root = osp.join({installed_copy!r}, 'mmlk', '.mim', 'configs')
paths = sorted(p for p in glob.glob(osp.join(root, '**', '*.py'), recursive=True) if '_base_' not in p)
for path in paths:
    cfg = Config.fromfile(path)
    assert 'mmlk' in cfg.model.backbone.type or 'RepLKNet' in cfg.model.backbone.type, path
print(len(paths))
'''
    env = dict(os.environ, PYTHONPATH=installed_copy)
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=str(tmp_path),
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    shipped = [p for p in subprocess.run(['git', 'ls-files', 'configs'], cwd=REPO, capture_output=True,
                                         text=True, check=True).stdout.split()
               if p.endswith('.py') and '_base_' not in p]
    assert int(out.stdout.split()[-1]) == len(shipped) > 40


def test_mim_search_lists_every_model_of_checkpoints_yaml(installed_copy, tmp_path):
    """`mim search mmlk` on the installed copy: every checkpoints.yaml entry with config, metric and weights."""
    pytest.importorskip('mim')
    import yaml
    with open(osp.join(REPO, 'checkpoints.yaml')) as f:
        entries = yaml.safe_load(f)['checkpoints']
    env = dict(os.environ, PYTHONPATH=installed_copy)
    code = 'import sys; from mim.cli import cli; sys.exit(cli())'
    for args, expected in ((['search', 'mmlk'], entries),
                           (['search', 'mmlk', '--model', 'replknet'], [e for e in entries if e['arch'] == 'replknet'])):
        out = subprocess.run([sys.executable, '-c', code, *args, '--display-width', '400'], capture_output=True,
                             text=True, cwd=str(tmp_path), env=env, timeout=300)
        assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-2000:])
        listed = set(re.findall(r'config id: (\S+)', out.stdout))
        assert listed == {e['name'] for e in expected}, out.stdout[-2000:]
    assert 'replknet-31b_32xb64_in1k-224.py' in out.stdout and 'top_1_accuracy' in out.stdout.lower()


def test_metafiles_are_generated_from_checkpoints_yaml():
    out = subprocess.run([sys.executable, 'tools/misc/generate_metafiles.py', '--check'], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr + ' (run python tools/misc/generate_metafiles.py)'
