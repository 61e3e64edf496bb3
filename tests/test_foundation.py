"""Foundation: import hygiene, registry scope, mini ADE20K dataset, host conventions and the tools."""
import hashlib
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from mmengine.config import Config

from mmlk.engine.host_config import (adapt_to_cpu, apply_resume, build_eval_metrics, load_config)
from mmlk.synthetic import make_ade20k
from mmlk.synthetic.common import MARKER

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_CONFIG = osp.join(REPO, 'configs', 'demo', 'upernet_replknet-mini_1xb8-300it_ade20k-mini-128x128.py')
TINY_REPLKNET = dict(large_kernel_sizes=[7, 7, 5, 3], layers=[1, 1, 1, 1], channels=[8, 16, 32, 64],
                     small_kernel=3, dw_ratio=1, ffn_ratio=1)


def run_python(code: str, timeout: int = 120) -> str:
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=timeout,
                         cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


# ---------------------------------------------------------------- import hygiene and registry

@pytest.mark.slow
def test_import_mmlk_leaves_host_libraries_unimported():
    out = run_python('import sys, mmlk; '
                     'print(sorted(m for m in ("mmdet", "mmseg", "mmpretrain") if m in sys.modules))')
    assert out.strip() == '[]'


@pytest.mark.slow
def test_import_mmlk_works_when_a_host_library_is_missing():
    # A meta-path finder that makes mmdet, mmseg and mmpretrain un-importable, as on a machine
    # that has none of them installed.
    code = '''
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('mmdet', 'mmseg', 'mmpretrain'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import mmlk
from mmlk.registry import MODELS
print(MODELS.get('RepLKNet').__module__)
'''
    assert run_python(code).strip() == 'mmlk.models.replknet.model'


@pytest.mark.parametrize('scope', ['mmseg', 'mmdet', 'mmpretrain'])
def test_scoped_name_resolves_from_every_host_scope(scope):
    import importlib

    from mmengine.registry import DefaultScope, init_default_scope

    import mmlk  # noqa: F401
    from mmlk.models.replknet.model import RepLKNet
    host_registry = importlib.import_module(f'{scope}.registry').MODELS
    init_default_scope(scope)
    try:
        for type_name in ('mmlk.RepLKNet', 'mmlk.RepNeXt'):
            cls = host_registry.get(type_name)
            assert cls is not None and cls.__module__.startswith('mmlk.'), (scope, type_name, cls)
        model = host_registry.build(dict(type='mmlk.RepLKNet', arch=TINY_REPLKNET))
        assert isinstance(model, RepLKNet)
        plain = host_registry.get('RepLKNet')
        if scope == 'mmpretrain':
            # mmpretrain's own RepLKNet must keep its name (never clobbered by the plugin).
            assert plain.__module__.startswith('mmpretrain.'), plain
        else:
            assert plain is RepLKNet
    finally:
        DefaultScope._instance_dict.pop(next(reversed(DefaultScope._instance_dict)), None)


# ---------------------------------------------------------------- mini ADE20K dataset

def _tree_digest(root: str) -> str:
    digest = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if name == MARKER:  # records the absolute root, which differs by design
                continue
            with open(osp.join(dirpath, name), 'rb') as f:
                digest.update(name.encode() + f.read())
    return digest.hexdigest()


def test_mini_ade20k_loads_in_mmseg_with_remapped_labels(mini_ade20k):
    from mmengine.registry import init_default_scope
    from mmseg.datasets import ADE20KDataset
    init_default_scope('mmseg')
    classes = ('wall', 'building', 'sky', 'floor', 'tree', 'ceiling')
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]
    dataset = ADE20KDataset(data_root=mini_ade20k, metainfo=dict(classes=classes), pipeline=pipeline,
                            data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'))
    assert len(dataset) == 8
    assert dataset.metainfo['classes'] == classes
    seen = set()
    for i in range(len(dataset)):
        item = dataset[i]
        assert item['img'].shape == (128, 128, 3)
        labels = np.unique(item['gt_seg_map'])
        seen.update(labels.tolist())
        # Every pixel is one of the six classes: nothing is ignored, nothing out of range.
        assert labels.min() >= 0 and labels.max() < len(classes)
    assert 0 in seen and len(seen) >= 3


def test_mini_dataset_is_deterministic_reused_and_never_overwrites(tmp_path):
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    make_ade20k(a, num_train=3, num_val=2, size=32, seed=7)
    make_ade20k(b, num_train=3, num_val=2, size=32, seed=7)
    assert _tree_digest(a) == _tree_digest(b)
    before = os.stat(osp.join(a, 'images', 'training', 'ADE_train_00000000.jpg')).st_mtime_ns
    make_ade20k(a, num_train=3, num_val=2, size=32, seed=7)  # same spec: reused as is
    assert os.stat(osp.join(a, 'images', 'training', 'ADE_train_00000000.jpg')).st_mtime_ns == before
    with pytest.raises(FileExistsError, match='different mini dataset'):
        make_ade20k(a, num_train=4, num_val=2, size=32, seed=7)
    user_dir = tmp_path / 'precious'
    user_dir.mkdir()
    (user_dir / 'thesis.txt').write_text('do not lose me')
    with pytest.raises(FileExistsError, match='not an mmlk mini dataset'):
        make_ade20k(str(user_dir), num_train=1, num_val=1, size=32)
    assert (user_dir / 'thesis.txt').read_text() == 'do not lose me'
    # Nothing half-written is left next to the datasets.
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a', 'b', 'precious']


@pytest.mark.slow
def test_mini_dataset_cli_reports_errors_cleanly(tmp_path):
    (tmp_path / 'x').mkdir()
    (tmp_path / 'x' / 'file').write_text('1')
    out = subprocess.run([sys.executable, '-m', 'mmlk.synthetic', 'ade20k', '--out', str(tmp_path / 'x')],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 2 and 'not an mmlk mini dataset' in out.stderr and 'Traceback' not in out.stderr


# ---------------------------------------------------------------- host conventions

def _cfg(scope: str, **kwargs) -> Config:
    return Config(dict(default_scope=scope, **kwargs))


def test_eval_names_map_onto_each_host_evaluator():
    seg = build_eval_metrics(_cfg('mmseg', test_evaluator=dict(type='IoUMetric', iou_metrics=['mIoU'])),
                             ['mIoU', 'mDice'])
    assert seg == [dict(type='IoUMetric', iou_metrics=['mIoU', 'mDice'])]
    det = build_eval_metrics(_cfg('mmdet', test_evaluator=dict(type='CocoMetric', ann_file='a.json',
                                                               metric='bbox')), ['bbox', 'segm'])
    assert det == [dict(type='CocoMetric', ann_file='a.json', metric=['bbox', 'segm'])]
    cls = build_eval_metrics(_cfg('mmpretrain', model=dict(head=dict(num_classes=3))), ['accuracy', 'f1_score'])
    assert cls == [dict(type='Accuracy', topk=(1,)), dict(type='SingleLabelMetric', items=['f1_score'])]
    with pytest.raises(ValueError, match='valid names are mIoU, mDice, mFscore'):
        build_eval_metrics(_cfg('mmseg'), ['bbox'])
    with pytest.raises(ValueError, match='default_scope'):
        build_eval_metrics(_cfg('mmengine'), ['mIoU'])


def test_cpu_adaptation_and_resume_semantics(tmp_path):
    import torch
    cfg = load_config(DEMO_CONFIG)
    adapt_to_cpu(cfg)
    if not torch.cuda.is_available():
        assert 'SyncBN' not in str(cfg.model) and cfg.model.backbone.norm_cfg.type == 'BN'
        assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    apply_resume(cfg, 'auto')
    assert cfg.resume is True and cfg.load_from is None
    with pytest.raises(FileNotFoundError, match='--resume checkpoint not found'):
        apply_resume(cfg, str(tmp_path / 'missing.pth'))


# ---------------------------------------------------------------- tools: train, resume, test

# The train -> interrupt -> --resume -> test cycle of tools/train.py and tools/test.py runs in
# tests/test_configs_seg.py::test_train_then_test_on_mini_ade20k[upernet] (one process for the whole flow).


@pytest.mark.slow
def test_test_tool_rejects_unknown_metric_and_missing_checkpoint(tmp_path):
    out = subprocess.run([sys.executable, 'tools/test.py', DEMO_CONFIG, str(tmp_path / 'nope.pth')],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode != 0 and 'checkpoint not found' in out.stderr


@pytest.mark.slow
def test_test_tool_refuses_a_checkpoint_that_does_not_fit(mini_ade20k, tmp_path):
    import torch
    bad = tmp_path / 'other_model.pth'
    torch.save({'state_dict': {'backbone.some.other.weight': torch.zeros(3)}}, bad)
    out = subprocess.run([sys.executable, 'tools/test.py', DEMO_CONFIG, str(bad), '--eval', 'mIoU',
                          '--work-dir', str(tmp_path / 'w'), '--cfg-options'] +
                         [f'{k}.dataset.data_root={mini_ade20k}' for k in
                          ('train_dataloader', 'val_dataloader', 'test_dataloader')],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode != 0
    assert 'does not fit the model' in out.stderr and 'convert it first' in out.stderr, out.stderr[-2000:]
    assert 'mIoU:' not in out.stdout


def test_amp_on_cpu_trains_under_bfloat16_autocast():
    import torch
    from mmengine.optim import build_optim_wrapper

    import mmlk  # noqa: F401
    from mmlk.engine.host_config import apply_amp
    cfg = Config(dict(default_scope='mmseg', optim_wrapper=dict(
        type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1))))
    apply_amp(cfg)
    if torch.cuda.is_available():
        pytest.skip('on CUDA --amp uses mmengine\'s AmpOptimWrapper')
    model = torch.nn.Linear(4, 2)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    before = model.weight.detach().clone()
    with wrapper.optim_context(model):
        out = model(torch.randn(3, 4))
    assert out.dtype == torch.bfloat16
    wrapper.update_params(out.float().pow(2).mean())
    assert model.weight.dtype == torch.float32 and not torch.equal(model.weight, before)
