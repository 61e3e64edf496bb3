"""Classification configs (mmpretrain): every config and its deploy/ variant loads, builds its full-size
model without weights and runs one forward; one config trains for a few iterations on the mini
ImageNet-layout dataset through ``tools/train.py`` and is evaluated with ``tools/test.py --eval accuracy``.

Full-size builds are real (RepLKNet-XL has 335M parameters) and checked against the published parameter
and state-dict counts. Forwards use a 64 px input; for RepLKNet one forward per distinct architecture
would cost 3-5 CPU-seconds each, so only 31B runs it (training and merged form, compared), while the other
RepLKNet configs (same blocks, other widths: 31L, XL) are built and counted without a forward. Every
RepNeXt config and deploy variant runs a forward.
"""
import glob
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from _helpers import IMAGENET_MEAN, IMAGENET_STD, randomise_bn, run_flow

pytest.importorskip('mmpretrain')

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
REPLKNET_CONFIGS = ['replknet-31b_32xb64_in1k-224.py', 'replknet-31b_32xb64_in1k-384.py',
                    'replknet-31b_in21k-pre_32xb32_in1k-224.py', 'replknet-31b_in21k-pre_32xb32_in1k-384.py',
                    'replknet-31l_in21k-pre_32xb32_in1k-384.py', 'replknet-xl_meg73m-pre_32xb32_in1k-320.py']
REPNEXT_CONFIGS = [f'repnext-m{i}_8xb256_in1k.py' for i in range(6)]
CONFIGS = ([f'configs/replknet/{c}' for c in REPLKNET_CONFIGS]
           + [f'configs/repnext/{c}' for c in REPNEXT_CONFIGS])
DEPLOY_CONFIGS = [osp.join(osp.dirname(c), 'deploy', osp.basename(c)) for c in CONFIGS]

# Published sizes (REFERENCE.md): parameters with the 1k head and state-dict entries.
REPLKNET_PARAMS = {'31B': 79_864_168, '31L': 172_671_016, 'XL': 335_435_752}
REPLKNET_ENTRIES = {'31B': 1171, '31L': 1171, 'XL': 1027}
REPLKNET_MERGED_ENTRIES = 931  # 31B: 1171 - 24 x (6 + 6 - 2); XL: 1027 - 24 x (6 - 2)
REPNEXT_PARAMS_M = {'m0': 2.72, 'm1': 5.32, 'm2': 7.05, 'm3': 8.47, 'm4': 14.08, 'm5': 22.71}


def load(path: str) -> Config:
    return Config.fromfile(osp.join(REPO, path))


def build(cfg: Config) -> torch.nn.Module:
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    return model.eval()


def test_the_published_config_set_is_complete():
    found = sorted(osp.relpath(p, REPO) for pattern in ('configs/replknet/replknet-*_in1k-*.py',
                                                         'configs/replknet/deploy/replknet-*_in1k-*.py',
                                                         'configs/repnext/repnext-m*_in1k.py',
                                                         'configs/repnext/deploy/repnext-m*_in1k.py')
                   for p in glob.glob(osp.join(REPO, pattern))
                   if '_distill-' not in p)  # distillation configs: tests/test_repnext_recipes.py
    assert found == sorted(CONFIGS + DEPLOY_CONFIGS)


@pytest.mark.parametrize('path', CONFIGS + DEPLOY_CONFIGS)
def test_config_loads_with_its_conventions(path):
    cfg = load(path)
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.custom_imports == dict(imports=['mmlk'], allow_failed_imports=False)
    assert cfg.model.backbone.type in ('mmlk.RepLKNet', 'mmlk.RepNeXt')
    # The real global batch is in the name, and auto_scale_lr refers to it.
    gpus, per_gpu = map(int, re.search(r'_(\d+)xb(\d+)_', osp.basename(path)).groups())
    assert cfg.train_dataloader.batch_size == per_gpu
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=gpus * per_gpu)
    # Evaluation preprocessing of the released weights.
    test_pipeline = [t['type'] for t in cfg.test_dataloader.dataset.pipeline]
    size = int(re.search(r'-(\d+)\.py$', path).group(1)) if re.search(r'-(\d+)\.py$', path) else 224
    if size >= 384:  # upstream warps to size x size without cropping
        assert test_pipeline == ['LoadImageFromFile', 'Resize', 'PackInputs']
        assert tuple(cfg.test_dataloader.dataset.pipeline[1].scale) == (size, size)
    else:  # short edge size / 0.875, centre crop
        assert test_pipeline == ['LoadImageFromFile', 'ResizeEdge', 'CenterCrop', 'PackInputs']
        assert cfg.test_dataloader.dataset.pipeline[1].scale == int(size / 0.875)
        assert cfg.test_dataloader.dataset.pipeline[2].crop_size == size
    assert all(t.get('interpolation', 'bicubic') == 'bicubic' for t in cfg.test_dataloader.dataset.pipeline)
    if 'replknet-xl' in path:
        assert cfg.data_preprocessor.mean == [127.5] * 3 and cfg.data_preprocessor.std == [127.5] * 3
    else:
        assert cfg.data_preprocessor.mean == IMAGENET_MEAN and cfg.data_preprocessor.std == IMAGENET_STD
    is_deploy = '/deploy/' in path
    assert bool(cfg.model.backbone.get('deploy', False)) == is_deploy
    # Fine-tunes (22K/MegData/384) start from pretrained weights and use layer-wise lr decay 0.7.
    if not is_deploy and ('-pre_' in path or path.endswith('in1k-384.py')):
        assert cfg.optim_wrapper.constructor == 'mmlk.LearningRateDecayOptimWrapperConstructor'
        assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.7
        assert cfg.model.backbone.init_cfg.type == 'Pretrained'


def _forward(model: torch.nn.Module) -> torch.Tensor:
    inputs = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(inputs, mode='tensor')
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
    return out


@pytest.mark.slow
@pytest.mark.parametrize('path', [c for c in CONFIGS if 'replknet' in c])
def test_replknet_config_builds_full_size_model(path):
    cfg = load(path)
    model = build(cfg)
    arch = cfg.model.backbone.arch
    assert sum(p.numel() for p in model.parameters()) == REPLKNET_PARAMS[arch]
    assert len(model.state_dict()) == REPLKNET_ENTRIES[arch]
    # The official flat layout sits under `backbone.` (stem/stages/transitions/norm/head).
    keys = model.state_dict().keys()
    assert 'backbone.norm.running_var' in keys and 'backbone.head.weight' in keys
    rates = [m.drop_prob for m in model.modules() if type(m).__name__ == 'DropPath']
    assert max(rates) == pytest.approx(cfg.model.backbone.drop_path_rate)  # the recipe's stochastic depth


@pytest.mark.slow
@pytest.mark.parametrize('path', [c for c in DEPLOY_CONFIGS if 'replknet' in c])
def test_replknet_deploy_config_builds_the_merged_model(path):
    cfg = load(path)
    model = build(cfg)
    keys = list(model.state_dict())
    assert len(keys) == REPLKNET_MERGED_ENTRIES
    assert not any('lkb_origin' in k or 'small_conv' in k for k in keys)
    assert sum('lkb_reparam.weight' in k for k in keys) == 24
    assert cfg.model.backbone.get('init_cfg') is None


@pytest.mark.slow
@pytest.mark.parametrize('index', range(6))
def test_repnext_configs_build_and_their_deploy_variant_is_the_merged_model(index):
    cfg = load(CONFIGS[6 + index])
    model = build(cfg)
    arch = cfg.model.backbone.arch
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == REPNEXT_PARAMS_M[arch]
    randomise_bn(model, mean_std=0.1, var_range=(0.5, 1.5), affine=False)  # statistics only
    reference = _forward(model)

    deploy_cfg = load(DEPLOY_CONFIGS[6 + index])
    deployed = build(deploy_cfg)
    model.backbone.switch_to_deploy()
    model.head.switch_to_deploy()
    # The deploy config builds exactly the structure that merging produces: strict load, same output.
    deployed.load_state_dict(model.state_dict(), strict=True)
    assert sum(p.numel() for p in deployed.parameters()) < REPNEXT_PARAMS_M[arch] * 1e6
    torch.testing.assert_close(_forward(deployed), reference, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_replknet_deploy_config_matches_merged_training_model():
    """31B: train-form model merged in place loads strictly into the deploy config's model."""
    model = build(load(CONFIGS[0]))
    randomise_bn(model, mean_std=0.1, var_range=(0.5, 1.5), affine=False)  # statistics only
    reference = _forward(model)
    model.backbone.switch_to_deploy()
    deployed = build(load(DEPLOY_CONFIGS[0]))
    deployed.load_state_dict(model.state_dict(), strict=True)
    torch.testing.assert_close(_forward(deployed), reference, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- tools/train.py + tools/test.py

TINY_REPLKNET = dict(large_kernel_sizes=[13, 11, 9, 7], layers=[1, 1, 2, 1], channels=[16, 32, 64, 128],
                     small_kernel=3, dw_ratio=1, ffn_ratio=2)


def _cli_overrides(data_root: str, num_classes: int, pretrained: str) -> list:
    opts = ['model.backbone.arch._delete_=True']
    opts += [f'model.backbone.arch.{k}={v}'.replace(' ', '') for k, v in TINY_REPLKNET.items()]
    opts += [f'model.backbone.num_classes={num_classes}', f'model.backbone.init_cfg.checkpoint={pretrained}',
             f'data_preprocessor.num_classes={num_classes}',
             'default_hooks.logger.interval=1', 'randomness.seed=0']
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.dataset.data_root={data_root}', f'{loader}.batch_size=4',
                 f'{loader}.num_workers=0', f'{loader}.persistent_workers=False']
    return opts


@pytest.fixture(scope='module')
def mini_imagenet(tmp_path_factory) -> str:
    from mmlk.synthetic import make_imagenet
    root = str(tmp_path_factory.mktemp('data') / 'imagenet_mini')
    make_imagenet(root, num_train=16, num_val=8, size=64, num_classes=5)
    return root


def test_mini_imagenet_is_deterministic_balanced_and_read_by_mmpretrain(mini_imagenet, tmp_path):
    from mmpretrain.datasets import ImageNet

    from mmlk.synthetic import IMAGENET_WNIDS, make_imagenet
    again = str(tmp_path / 'again')
    make_imagenet(again, num_train=16, num_val=8, size=64, num_classes=5)
    for rel in ('meta/train.txt', 'meta/val.txt', f'train/{IMAGENET_WNIDS[3]}/{IMAGENET_WNIDS[3]}_3.JPEG',
                'val/ILSVRC2012_val_00000008.JPEG'):
        with open(osp.join(mini_imagenet, rel), 'rb') as a, open(osp.join(again, rel), 'rb') as b:
            assert a.read() == b.read(), rel
    train = ImageNet(data_root=mini_imagenet, split='train', pipeline=[])
    val = ImageNet(data_root=mini_imagenet, split='val', pipeline=[])
    assert len(train) == 16 and len(val) == 8
    labels = [train.get_data_info(i)['gt_label'] for i in range(len(train))]
    assert sorted(labels) == sorted(list(range(5)) * 3 + [0])  # balanced: image i has class i % 5
    # Folder-per-class training images: the folder is the class's ImageNet synset.
    info = train.get_data_info(7)
    assert f'/train/{IMAGENET_WNIDS[info["gt_label"]]}/' in info['img_path']
    with pytest.raises(ValueError, match='num_classes'):
        make_imagenet(str(tmp_path / 'bad'), num_classes=11)


@pytest.mark.slow
def test_train_then_test_a_finetune_config_on_mini_imagenet(mini_imagenet, tmp_path):
    """22K->1K fine-tune recipe (its own 224 px pipelines, layer-wise lr decay, EMA) on 16 images.

    Like the real recipe it starts from a pretrained classifier whose head has another class count (a
    tiny stand-in for the 21841-class ImageNet-22K weights, in the official flat layout).
    """
    from mmlk.models import RepLKNet
    pretrained = str(tmp_path / 'pretrained_22k.pth')
    source = RepLKNet(arch=TINY_REPLKNET, out_indices=(), num_classes=7)
    torch.save({'model': source.state_dict()}, pretrained)

    config = 'configs/replknet/replknet-31b_in21k-pre_32xb32_in1k-224.py'
    work_dir = str(tmp_path / 'work')
    opts = _cli_overrides(mini_imagenet, num_classes=5, pretrained=pretrained) + ['train_cfg.max_epochs=1']
    ckpt = osp.join(work_dir, 'epoch_1.pth')
    log, out = run_flow(['tools/train.py', config, '--work-dir', work_dir, '--cfg-options'] + opts,
                        ['tools/test.py', config, ckpt, '--eval', 'accuracy', '--work-dir', work_dir,
                         '--cfg-options'] + opts, timeout=360)
    # The backbone's init_cfg went through mmlk's loader (the config dump alone would not say 'matched').
    assert re.search(r'pretrained_22k\.pth.*\d+ matched', log), log[-3000:]
    assert 'layer-wise lr decay 0.7' in log and '4 backbone layers' in log
    # 1 process x 4 images against the recipe's 1024: said at WARNING, not silently rescaled
    assert 'the global batch is 4 (1 process(es) x 4)' in log and '--auto-scale-lr' in log, log[-3000:]
    assert 'LR is set based on batch size' not in log
    assert re.search(r'Epoch\(train\)\s+\[1\]\[4/4\]', log), log[-2000:]
    assert osp.isfile(ckpt)

    top1 = re.search(r'accuracy/top1: ([0-9.]+)', out)
    assert top1 is not None, out[-2000:]
    assert 0.0 <= float(top1.group(1)) <= 100.0
