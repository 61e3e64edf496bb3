"""RepNeXt's published training recipes in mmpretrain: DeiT-style distillation (mmlk.DistillImageClassifier)
and the configs of the CIFAR-100 compact-model experiments and the distilled ImageNet runs.

Every new config loads and follows the conventions (real global batch in the name, auto_scale_lr off);
on generated data (64 px crops, a tiny teacher standing in for RegNetY-16GF) the configs that differ in
model, data or recipe take two training steps, M5's computes its losses, and one distillation
config trains through mmengine's Runner, whose checkpoint must hold the student only.
"""
import copy
import functools
import os.path as osp
import pickle
import re

import numpy as np
import pytest
import torch
import torch.nn as nn

pytest.importorskip('mmpretrain')
from mmengine.config import Config  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402

import mmlk  # noqa: E402,F401
import mmlk.models.classifiers.distill  # noqa: E402,F401  (as the configs' custom_imports do)
from _helpers import REPNEXT_TINY_RUN as TINY  # noqa: E402
from _helpers import REPO  # noqa: E402
CIFAR_CONFIGS = [f'configs/repnext/repnext-{a}_4xb512-{e}e_cifar100.py' for a in ('m0', 'm0e')
                 for e in (100, 200, 300, 400)]
DISTILL_CONFIGS = [f'configs/repnext/repnext-m{i}_distill-regnety160_8xb256_in1k.py' for i in range(6)]


def tiny_teacher(num_classes: int) -> dict:
    return dict(type='ImageClassifier', backbone=dict(type='mmlk.RepNeXt', arch=TINY, out_indices=(3, )),
                neck=dict(type='GlobalAveragePooling'),
                head=dict(type='LinearClsHead', num_classes=num_classes, in_channels=128))


def build(cfg_model: dict) -> nn.Module:
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(copy.deepcopy(cfg_model))


def student(distillation_type: str = 'hard', num_classes: int = 6, **kw) -> dict:
    return dict(type='mmlk.DistillImageClassifier',
                backbone=dict(type='mmlk.RepNeXt', arch=TINY, out_indices=(3, )),
                neck=dict(type='GlobalAveragePooling'),
                head=dict(type='mmlk.RepNeXtClsHead', num_classes=num_classes, in_channels=128),
                teacher=None if distillation_type == 'none' else tiny_teacher(num_classes),
                distillation_type=distillation_type, **kw)


# ------------------------------------------------------------------------------ the classifier
def test_teacher_is_frozen_hidden_and_moves_with_the_student():
    model = build(student())
    teacher = model.teacher
    assert isinstance(teacher, nn.Module) and not teacher.training
    names = set(model.state_dict())
    assert not any('teacher' in k for k in names)
    assert names == {k for k, _ in model.named_parameters()} | {k for k, _ in model.named_buffers()}
    params = {id(p) for p in model.parameters()}
    assert not any(id(p) in params for p in teacher.parameters())
    assert not any(p.requires_grad for p in teacher.parameters())
    model.train()
    assert model.training and model.backbone.training and not teacher.training
    model.double()
    assert next(teacher.parameters()).dtype == torch.float64
    assert copy.deepcopy(model).teacher is teacher  # EMA copies share the frozen teacher
    model.float()


@pytest.mark.parametrize('kind', ['hard', 'soft'])
def test_losses_follow_deit(kind):
    from mmpretrain.structures import DataSample
    torch.manual_seed(0)
    model = build(student(kind, alpha=0.3, tau=2.0, cls_loss=dict(type='CrossEntropyLoss')))
    model.train()
    x = torch.randn(4, 3, 32, 32)
    labels = torch.tensor([0, 1, 2, 3])
    samples = [DataSample().set_gt_label(int(i)) for i in labels]
    losses = model.loss(x, samples)
    with torch.no_grad():
        logits, logits_dist = model.head(model.extract_feat(x))
        t = model.teacher(x, mode='tensor')
    cls = nn.functional.cross_entropy(logits, labels)
    if kind == 'hard':
        dist = nn.functional.cross_entropy(logits_dist, t.argmax(1))
    else:  # DeiT: KL(teacher || student) at temperature tau, times tau^2, over the number of logits
        p_t = (t / 2.0).softmax(1)
        dist = (p_t * (p_t.log() - (logits_dist / 2.0).log_softmax(1))).sum() * 4.0 / logits_dist.numel()
    torch.testing.assert_close(losses['loss_cls'].detach(), 0.7 * cls)
    torch.testing.assert_close(losses['loss_distill'].detach(), 0.3 * dist)
    # prediction is the mean of both heads, as in the released classifier
    model.eval()
    with torch.no_grad():
        feats = model.extract_feat(x)[-1]
        mean = (model.head.head(feats) + model.head.head_dist(feats)) / 2
        torch.testing.assert_close(model.predict(x)[0].pred_score, mean[0].softmax(0))


def test_bad_arguments_say_what_to_do():
    with pytest.raises(ValueError, match='needs a teacher'):
        build(dict(student(), teacher=None))
    with pytest.raises(ValueError, match='distillation_type'):
        build(student(distillation_type='medium'))
    with pytest.raises(ValueError, match='alpha'):
        build(student(alpha=1.5))
    with pytest.raises(ValueError, match='two-head'):
        build(dict(student(), head=dict(type='LinearClsHead', num_classes=6, in_channels=128)))
    plain = build(student('none'))  # no teacher: the head's own loss on the mean of both heads
    assert plain.teacher is None and set(plain.loss(torch.randn(2, 3, 32, 32), _samples(2))) == {'loss'}


def _samples(n: int) -> list:
    from mmpretrain.structures import DataSample
    return [DataSample().set_gt_label(i % 6) for i in range(n)]


# ------------------------------------------------------------------------------ configs
@functools.lru_cache(maxsize=None)
def _load(path: str) -> Config:
    return Config.fromfile(osp.join(REPO, path))


def load(path: str) -> Config:
    """A fresh copy of the config (each file is parsed once per session: parsing costs about a second)."""
    return copy.deepcopy(_load(path))


@pytest.mark.parametrize('path', CIFAR_CONFIGS + DISTILL_CONFIGS)
def test_config_conventions(path):
    cfg = load(path)
    assert cfg.default_scope == 'mmpretrain' and 'mmlk' in cfg.custom_imports.imports
    if 'distill' in path:
        assert 'mmlk.models.classifiers.distill' in cfg.custom_imports.imports
    gpus, per_gpu = map(int, re.search(r'_(\d+)xb(\d+)[-_]', osp.basename(path)).groups())
    assert cfg.train_dataloader.batch_size == per_gpu
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=gpus * per_gpu)
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(1e-3 * gpus * per_gpu / 512)  # main.py's scaling
    assert cfg.custom_hooks[0].type == 'EMAHook' and cfg.custom_hooks[0].momentum == pytest.approx(4e-5)
    if 'cifar100' in path:
        epochs = int(re.search(r'-(\d+)e_', path).group(1))
        assert cfg.train_cfg.max_epochs == epochs and cfg.param_scheduler[-1].end == epochs
        assert cfg.train_dataloader.dataset.type == 'CIFAR100' and cfg.model.head.num_classes == 100
        assert cfg.data_preprocessor.num_classes == 100 and cfg.data_preprocessor.to_rgb is False
        assert cfg.model.backbone.arch == osp.basename(path).split('_')[0].split('-')[1]
    else:
        assert cfg.model.type == 'mmlk.DistillImageClassifier'
        assert cfg.model.teacher == dict(type='TimmClassifier', model_name='regnety_160', num_classes=1000)
        assert (cfg.model.distillation_type, cfg.model.alpha, cfg.model.tau) == ('hard', 0.5, 1.0)
        assert cfg.model.teacher_checkpoint.endswith('regnety_160-a5fe301d.pth')


def test_distill_config_builds_with_the_real_teacher():
    pytest.importorskip('timm')
    cfg = load(DISTILL_CONFIGS[0])
    model = build(cfg.model)
    assert round(sum(p.numel() for p in model.teacher.parameters()) / 1e6, 1) == 83.6  # RegNetY-16GF
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == 2.72  # only the student
    assert not any(k.startswith('teacher') for k in model.state_dict())


def _cifar100(root: str, n: int) -> None:
    """CIFAR-100's python-pickle layout (cifar-100-python/{train,test,meta}) with n random images."""
    rng = np.random.default_rng(0)
    base = osp.join(root, 'cifar-100-python')
    import os
    os.makedirs(base, exist_ok=True)
    for split in ('train', 'test'):
        entry = {'data': rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8),
                 'fine_labels': [i % 100 for i in range(n)], 'coarse_labels': [0] * n}
        with open(osp.join(base, split), 'wb') as f:
            pickle.dump(entry, f)
    with open(osp.join(base, 'meta'), 'wb') as f:
        pickle.dump({'fine_label_names': [f'c{i}' for i in range(100)]}, f)


def _shrink_pipelines(cfg: Config, size: int) -> None:
    """Same transforms, smaller crops (the models are fully convolutional)."""
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        for t in cfg[loader].dataset.pipeline:
            if t.type == 'RandomResizedCrop':
                t.scale = size
            elif t.type in ('Resize', 'ResizeEdge'):
                t.scale = (size + size // 7, ) * 2 if t.type == 'Resize' else size + size // 7
            elif t.type == 'CenterCrop':
                t.crop_size = size


def _prepare(path: str, tmp_path, monkeypatch) -> Config:
    """The config with generated data under tmp_path, 64 px crops and (distillation) a tiny saved teacher."""
    from mmpretrain.datasets import CIFAR100
    cfg = load(path)
    data = str(tmp_path / 'data')
    if 'cifar100' in path:
        _cifar100(data, 4)
        # the generated files are not the real ones: skip mmpretrain's md5 check (and its download)
        monkeypatch.setattr(CIFAR100, '_check_integrity', lambda self: True)
    else:
        from mmlk.synthetic import make_imagenet
        make_imagenet(data, num_train=4, num_val=2, size=32, num_classes=2)
        teacher_file = str(tmp_path / 'teacher.pth')
        torch.save({'model': build(tiny_teacher(1000)).state_dict()}, teacher_file)  # DeiT's layout
        cfg.model.teacher = tiny_teacher(1000)
        cfg.model.teacher_checkpoint = teacher_file
    _shrink_pipelines(cfg, 64)
    cfg.train_dataloader.update(batch_size=2, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.dataset.data_root = data
    return cfg


# Training steps cost seconds per config on the shared CPUs, so full steps run for the configs whose model,
# data or recipe differ; the other CIFAR-100 schedules equal their 300-epoch config apart from the schedule,
# and the largest distillation config builds and computes its losses (forward only).
TRAINED = [CIFAR_CONFIGS[2], CIFAR_CONFIGS[6], DISTILL_CONFIGS[0]]


@pytest.mark.parametrize('path', [c for c in CIFAR_CONFIGS if c not in TRAINED])
def test_other_cifar_schedules_change_only_the_schedule(path):
    cfg, ref = load(path), load(re.sub(r'-\d+e_', '-300e_', path))
    for key in ('model', 'train_dataloader', 'val_dataloader', 'optim_wrapper', 'custom_hooks', 'auto_scale_lr',
                'data_preprocessor'):
        assert cfg[key] == ref[key], key
    assert cfg.param_scheduler[0] == ref.param_scheduler[0]


@pytest.mark.parametrize('path', DISTILL_CONFIGS[-1:])  # M1-M4 differ from M0 / M5 only in width and depth
def test_larger_distill_configs_compute_their_losses(path, tmp_path, monkeypatch):
    from mmpretrain.registry import DATASETS
    from mmengine.dataset import pseudo_collate
    cfg = _prepare(path, tmp_path, monkeypatch)
    cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
        model = build(cfg.model)
    model.init_weights()
    model.train()
    with torch.no_grad():
        data = model.data_preprocessor(pseudo_collate([dataset[0], dataset[1]]), True)
        losses = model(**data, mode='loss')
    assert set(losses) == {'loss_cls', 'loss_distill'} and all(torch.isfinite(v) for v in losses.values())


@pytest.mark.parametrize('path', TRAINED)
def test_config_trains_two_iterations(path, tmp_path, monkeypatch):
    """The config's dataset, pipeline, model (with its teacher) and optimiser take two training steps."""
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import build_optim_wrapper
    from mmpretrain.registry import DATASETS
    cfg = _prepare(path, tmp_path, monkeypatch)
    cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)  # what the Runner does
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
        model = build(cfg.model)
        model.init_weights()
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    for step in range(2):
        batch = pseudo_collate([dataset[2 * step], dataset[2 * step + 1]])
        losses = model.train_step(batch, optim_wrapper)
        assert all(torch.isfinite(v) for v in losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    if 'distill' in path:
        assert set(losses) >= {'loss_cls', 'loss_distill'} and not model.teacher.training


@pytest.mark.parametrize('path', [DISTILL_CONFIGS[0]])
def test_runner_trains_and_saves_only_the_student(path, tmp_path, monkeypatch):
    """mmengine's Runner (EMA hook, checkpoint hook): the teacher is untouched and absent from the file."""
    from mmengine.runner import Runner
    cfg = _prepare(path, tmp_path, monkeypatch)
    # the Runner formats the whole config with yapf several times (seconds each); plain text suffices here
    monkeypatch.setattr(Config, 'pretty_text', property(lambda self: self.text))
    cfg.work_dir = str(tmp_path / 'work')
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1)
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.visualizer = dict(type='UniversalVisualizer', vis_backends=[])
    cfg.randomness = dict(seed=0)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    # written by this test's own run; mmengine pickles its message hub with getattr, which weights_only refuses
    saved = torch.load(osp.join(cfg.work_dir, 'epoch_1.pth'), map_location='cpu', weights_only=False)
    model = runner.model
    assert set(saved['state_dict']) == set(model.state_dict())
    if 'distill' in path:
        assert not any('teacher' in k for k in list(saved['state_dict']) + list(saved.get('ema_state_dict', {})))
        reference = torch.load(cfg.model.teacher_checkpoint, weights_only=True)['model']
        assert not model.teacher.training
        assert all(torch.equal(v, reference[k]) for k, v in model.teacher.state_dict().items())
