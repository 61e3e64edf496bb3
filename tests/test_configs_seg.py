"""Downstream segmentation configs (mmsegmentation 1.x): UperNet and Semantic FPN.

For every shipped config: it loads, its file name states what it contains (global batch, iterations,
crop), it carries the published recipe's defining settings, and its model builds at full size
(no weights) and runs one inference forward on a small image. For each task family one real
``tools/train.py`` run of a few iterations on the mini ADE20K dataset, with the config's own
pipelines and heads and a small backbone set through ``--cfg-options``, followed by
``tools/test.py --eval mIoU`` on the checkpoint it wrote.
"""
import glob
import os.path as osp
import re
from typing import Dict, List, Sequence

import pytest
import torch
from mmengine.config import Config

from _helpers import (IMAGENET_MEAN, REPLKNET_TINY_RUN, REPNEXT_TINY_RUN, REPO, arch_options, build_full_size,
                      cfg_option, checkpoint_names, config_ids, published_widths, run_flow)

SEG_CONFIGS = sorted(
    glob.glob(osp.join(REPO, 'configs', 'replknet', 'upernet_*.py')) +
    glob.glob(osp.join(REPO, 'configs', 'repnext', 'upernet_*.py')) +
    glob.glob(osp.join(REPO, 'configs', 'repnext', 'fpn_*.py')))
# The published settings (REFERENCE.md section 3) plus UperNet for RepNeXt; checkpoints.yaml and the
# README refer to these exact names.
EXPECTED = {
    'upernet_replknet-31b_in1k-pre_64xb2-40k_ade20k-512x512.py',
    'upernet_replknet-31b_in21k-pre_64xb2-40k_ade20k-640x640.py',
    'upernet_replknet-31l_in21k-pre_64xb1-80k_ade20k-640x640.py',
    'upernet_replknet-xl_meg73m-pre_16xb2-160k_ade20k-640x640.py',
    'upernet_replknet-31b_in1k-pre_32xb2-20k_cityscapes-769x769.py',
    'fpn_repnext-m3_in1k-pre_8xb4-80k_ade20k-512x512.py',
    'fpn_repnext-m4_in1k-pre_8xb4-80k_ade20k-512x512.py',
    'fpn_repnext-m5_in1k-pre_8xb4-80k_ade20k-512x512.py',
    'upernet_repnext-m3_in1k-pre_8xb2-160k_ade20k-512x512.py',
    'upernet_repnext-m4_in1k-pre_8xb2-160k_ade20k-512x512.py',
    'upernet_repnext-m5_in1k-pre_8xb2-160k_ade20k-512x512.py',
}
# "<gpus>xb<per gpu>-<k iters>k_<dataset>-<h>x<w>.py"
NAME_RE = re.compile(r'_(\d+)xb(\d+)-(\d+)k_(ade20k|cityscapes)-(\d+)x(\d+)\.py$')


def _pipeline_types(pipeline: Sequence[Dict]) -> List[str]:
    return [step['type'] for step in pipeline]


def test_every_expected_config_is_shipped():
    assert {osp.basename(p) for p in SEG_CONFIGS} == EXPECTED


@pytest.mark.parametrize('path', SEG_CONFIGS, ids=config_ids(SEG_CONFIGS))
def test_config_states_its_recipe(path):
    cfg = Config.fromfile(path)
    name = osp.basename(path)
    gpus, per_gpu, kiters, dataset, crop_h, crop_w = NAME_RE.search(name).groups()
    gpus, per_gpu, kiters, crop = int(gpus), int(per_gpu), int(kiters), (int(crop_h), int(crop_w))

    assert cfg.default_scope == 'mmseg'
    assert cfg.custom_imports == dict(imports=['mmlk'], allow_failed_imports=False)
    backbone = cfg.model.backbone
    assert backbone.type in ('mmlk.RepLKNet', 'mmlk.RepNeXt')
    # the name's batch and schedule are what the config runs
    assert cfg.train_dataloader.batch_size == per_gpu
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=gpus * per_gpu)
    assert cfg.train_cfg.max_iters == kiters * 1000
    assert cfg.param_scheduler[-1].end == kiters * 1000
    # the name's crop is what the training pipeline cuts and the preprocessor pads to
    crops = [s.crop_size for s in cfg.train_dataloader.dataset.pipeline if s.type == 'RandomCrop']
    assert crops == [crop] and tuple(cfg.model.data_preprocessor.size) == crop
    # training always runs on a training pipeline (upstream's XL config trained on its test one)
    assert _pipeline_types(cfg.train_dataloader.dataset.pipeline) == [
        'LoadImageFromFile', 'LoadAnnotations', 'RandomResize', 'RandomCrop', 'RandomFlip',
        'PhotoMetricDistortion', 'PackSegInputs']
    # the optimizer is replaced, not merged into the base SGD (no momentum leaking into AdamW)
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert 'momentum' not in cfg.optim_wrapper.optimizer
    num_classes = 19 if dataset == 'cityscapes' else 150
    assert cfg.model.decode_head.num_classes == num_classes
    names = checkpoint_names()
    if names:
        assert backbone.init_cfg.checkpoint in names, backbone.init_cfg

    if name.startswith('upernet_'):
        head, aux = cfg.model.decode_head, cfg.model.auxiliary_head
        assert head.type == 'UPerHead' and head.channels == 512 and head.in_index == [0, 1, 2, 3]
        assert aux.type == 'FCNHead' and aux.in_index == 2 and aux.loss_decode.loss_weight == 0.4
    if 'replknet' in name:
        opt = cfg.optim_wrapper
        assert opt.optimizer.lr == 2e-4 and opt.optimizer.weight_decay == 0.05
        assert opt.paramwise_cfg.norm_decay_mult == 0.0
        assert backbone.norm_cfg.type == 'SyncBN'
    if '-xl_' in name:
        assert backbone.arch == 'XL' and backbone.norm_intermediate_features is True
        assert cfg.model.data_preprocessor.mean == [127.5] * 3
        assert cfg.model.data_preprocessor.std == [127.5] * 3
    else:
        assert cfg.model.data_preprocessor.mean == IMAGENET_MEAN
    if dataset == 'cityscapes':
        assert cfg.model.decode_head.align_corners and cfg.model.auxiliary_head.align_corners
    if crop == (640, 640):
        assert cfg.model.test_cfg == dict(mode='slide', crop_size=(640, 640), stride=(426, 426))
    if name.startswith('fpn_'):
        assert cfg.model.decode_head.type == 'FPNHead' and cfg.model.neck.type == 'FPN'
        assert cfg.optim_wrapper.optimizer.lr == 1e-4


@pytest.mark.slow
@pytest.mark.parametrize('path', SEG_CONFIGS, ids=config_ids(SEG_CONFIGS))
def test_full_size_model_builds_and_predicts(path):
    import mmlk  # noqa: F401
    from mmseg.structures import SegDataSample

    cfg = Config.fromfile(path)
    model = build_full_size(cfg, 'mmseg').eval()
    # full size: the backbone has the published variant's widths, and the heads take them
    arch = cfg.model.backbone.arch
    widths = published_widths(model.backbone, arch)
    assert list(model.backbone.out_channels) == list(widths)
    neck = cfg.model.get('neck')
    assert list(neck.in_channels if neck else cfg.model.decode_head.in_channels) == list(widths)
    size = (32, 48)  # small: the point is that the full-size graph runs, not its accuracy
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, *size), dtype=torch.uint8)
    sample = SegDataSample(metainfo=dict(img_shape=size, ori_shape=size, pad_shape=size))
    with torch.no_grad():
        result = model.test_step(dict(inputs=[image], data_samples=[sample]))[0]
    logits = result.seg_logits.data
    assert logits.shape == (cfg.model.decode_head.num_classes, *size)
    assert torch.isfinite(logits).all()
    assert result.pred_sem_seg.data.shape == (1, *size)


# ---------------------------------------------------------------- one real run per family

def seg_mini_options(data_root: str, crop: int = 64) -> List[str]:
    """Point a config's own pipelines at a mini dataset with tiny sizes; 2 iterations, eval at the end."""
    opts = [
        f'train_dataloader.dataset.data_root={data_root}',
        f'val_dataloader.dataset.data_root={data_root}',
        f'test_dataloader.dataset.data_root={data_root}',
        # same transforms as published, scaled from 512-px crops to `crop`-px ones
        cfg_option('train_dataloader.dataset.pipeline.2.scale', (4 * crop, crop)),
        cfg_option('train_dataloader.dataset.pipeline.3.crop_size', (crop, crop)),
        cfg_option('val_dataloader.dataset.pipeline.1.scale', (4 * crop, crop)),
        cfg_option('test_dataloader.dataset.pipeline.1.scale', (4 * crop, crop)),
        cfg_option('model.data_preprocessor.size', (crop, crop)),
        'model.backbone.init_cfg=None',
        'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
        'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1',
        'randomness.seed=0',
    ]
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.num_workers=0', f'{loader}.persistent_workers=False']
    return opts


UNIREPLKNET_TINY_RUN = dict(depths=[1, 1, 1, 1], dims=[16, 32, 64, 128], kernel_sizes=[[3], [13], [13], [7]])
# Same head types and structure, narrower (the 512-channel UPerHead dominates a CPU step otherwise).
SMALL_HEADS = ['model.decode_head.channels=32', 'model.auxiliary_head.channels=16']
FAMILY_RUNS = {
    'upernet': ('configs/replknet/upernet_replknet-31b_in1k-pre_64xb2-40k_ade20k-512x512.py',
                arch_options(REPLKNET_TINY_RUN) + [
                    cfg_option('model.decode_head.in_channels', REPLKNET_TINY_RUN['channels']),
                    cfg_option('model.auxiliary_head.in_channels', REPLKNET_TINY_RUN['channels'][2])] + SMALL_HEADS),
    # UniRepLKNet's shipped UperNet config through mmlk's tools (a tiny arch: 13x13 dilated reparam blocks)
    'upernet-unireplknet': ('configs/unireplknet/upernet_unireplknet-t_in1k-pre_8xb2-160k_ade20k-512x512.py',
                            arch_options(UNIREPLKNET_TINY_RUN) + [
                                cfg_option('model.decode_head.in_channels', UNIREPLKNET_TINY_RUN['dims']),
                                cfg_option('model.auxiliary_head.in_channels', UNIREPLKNET_TINY_RUN['dims'][2])]
                            + SMALL_HEADS),
    'semantic-fpn': ('configs/repnext/fpn_repnext-m3_in1k-pre_8xb4-80k_ade20k-512x512.py',
                     arch_options(REPNEXT_TINY_RUN) + [
                         cfg_option('model.neck.in_channels', REPNEXT_TINY_RUN['embed_dims']),
                         'model.neck.out_channels=32', cfg_option('model.decode_head.in_channels', [32] * 4),
                         'model.decode_head.channels=32', 'train_dataloader.batch_size=2']),
}


@pytest.mark.slow
@pytest.mark.parametrize('family', sorted(FAMILY_RUNS))
def test_train_then_test_on_mini_ade20k(family, mini_ade20k, tmp_path):
    """tools/train.py (2 iterations, validation at 2) -> tools/test.py --eval mIoU, one process per flow.

    UperNet's flow also stops and resumes: tools/train.py --resume continues from iter_2.pth to iteration 4 and
    tools/test.py evaluates iter_4.pth (per-class table): the train -> resume -> test cycle of mmlk's tools.
    """
    config, model_opts = FAMILY_RUNS[family]
    work_dir = str(tmp_path / 'work')
    opts = seg_mini_options(mini_ade20k) + model_opts
    train = ['tools/train.py', config, '--work-dir', work_dir, '--cfg-options', *opts]
    resumes = family == 'upernet'
    ckpt = osp.join(work_dir, 'iter_4.pth' if resumes else 'iter_2.pth')
    test = ['tools/test.py', config, ckpt, '--eval', 'mIoU', '--work-dir', work_dir, '--cfg-options', *opts]
    flow = [train, train[:2] + ['--work-dir', work_dir, '--resume', '--cfg-options', *opts, 'train_cfg.max_iters=4'],
            test] if resumes else [train, test]
    logs = run_flow(*flow)
    log = logs[0]
    # two optimisation steps with finite losses, then the validation at iteration 2
    losses = [float(v) for v in re.findall(r'Iter\(train\) \[\s*\d+/2\].*?\bloss: ([0-9.naif]+)', log)]
    assert len(losses) == 2 and all(v == v and v != float('inf') for v in losses), log[-3000:]
    assert re.search(r'Iter\(val\) .*mIoU: [0-9.]+', log), log[-3000:]
    assert osp.isfile(osp.join(work_dir, 'iter_2.pth'))
    if resumes:
        log = logs[1]
        assert re.search(r'resumed epoch: 0, iter: 2', log), log[-3000:]
        assert 'replaced' in log and 'SyncBN' in log  # the CPU switch is logged
        assert re.search(r'Iter\(train\) \[\s*4/4\]', log), log[-3000:]
        assert osp.isfile(ckpt)

    log = logs[-1]
    miou = re.search(r'mIoU: ([0-9.]+)', log)
    assert miou is not None, log[-3000:]
    assert 0.0 <= float(miou.group(1)) <= 100.0
    if resumes:
        assert 'per class results' in log
        for name in ('wall', 'building', 'ceiling'):
            assert re.search(rf'\|\s*{name}\s*\|', log), name
        assert 0.0 <= float(re.findall(r'^mIoU: ([0-9.]+)$', log, flags=re.M)[-1]) <= 100.0
    print(f'{family}: {config} on mini ADE20K after {4 if resumes else 2} iterations: mIoU {miou.group(1)}')
