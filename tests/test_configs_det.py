"""Downstream detection configs (mmdetection 3.x): Cascade Mask R-CNN, FCOS and Mask R-CNN.

For every shipped config: it loads (its bases come from the installed mmdet through ``mmdet::``),
its file name states what it contains (global batch, schedule), it carries the published recipe's
defining settings, and its model builds at full size (no weights) and runs one inference forward
on a small image. For each task family one real ``tools/train.py`` run of one short epoch on the
mini COCO dataset, with the config's own pipelines and heads and a small backbone set through
``--cfg-options``, followed by ``tools/test.py --eval bbox [segm]`` on the checkpoint it wrote.
"""
import glob
import os.path as osp
import re
from typing import List

import pytest
import torch
from mmengine.config import Config

from _helpers import (IMAGENET_MEAN, REPLKNET_TINY_RUN, REPNEXT_TINY_RUN, REPO, arch_options, build_full_size,
                      cfg_option, checkpoint_names, config_ids, published_widths, run_flow)

DET_CONFIGS = sorted(
    glob.glob(osp.join(REPO, 'configs', 'replknet', '*_coco.py')) +
    glob.glob(osp.join(REPO, 'configs', 'repnext', '*_coco.py')))
EXPECTED = {
    'cascade-mask-rcnn_replknet-31b_in1k-pre_fpn_4conv1fc-giou_32xb1-ms-crop-3x_coco.py',
    'cascade-mask-rcnn_replknet-31b_in21k-pre_fpn_4conv1fc-giou_32xb1-ms-crop-3x_coco.py',
    'cascade-mask-rcnn_replknet-31l_in21k-pre_fpn_4conv1fc-giou_32xb1-ms-crop-3x_coco.py',
    'cascade-mask-rcnn_replknet-xl_meg73m-pre_fpn_4conv1fc-giou_8xb4-ms-crop-3x_coco.py',
    'fcos_replknet-31b_in1k-pre_fpn_8xb2-ms-640-800-2x_coco.py',
    'mask-rcnn_repnext-m3_in1k-pre_fpn_8xb2-1x_coco.py',
    'mask-rcnn_repnext-m4_in1k-pre_fpn_8xb2-1x_coco.py',
    'mask-rcnn_repnext-m5_in1k-pre_fpn_8xb2-1x_coco.py',
}
# "..._<gpus>xb<per gpu>[-augmentation]-<n>x_coco.py", n x 12 epochs
NAME_RE = re.compile(r'_(\d+)xb(\d+)(?:-[a-z0-9-]+?)?-(\d)x_coco\.py$')
# Keep CPU inference cheap: fewer RPN proposals (published: 1000) and final detections (100) -- cost
# knobs, not recipe changes -- and no score threshold, so that every head, the mask head included,
# produces output from the untrained model.
CHEAP_TEST_CFG = {'rpn': dict(max_per_img=30), 'rcnn': dict(score_thr=0.0, max_per_img=10)}


def test_every_expected_config_is_shipped():
    assert {osp.basename(p) for p in DET_CONFIGS} == EXPECTED


@pytest.mark.parametrize('path', DET_CONFIGS, ids=config_ids(DET_CONFIGS))
def test_config_states_its_recipe(path):
    cfg = Config.fromfile(path)
    name = osp.basename(path)
    gpus, per_gpu, times = (int(v) for v in NAME_RE.search(name).groups())

    assert cfg.default_scope == 'mmdet'
    assert cfg.custom_imports == dict(imports=['mmlk'], allow_failed_imports=False)
    backbone = cfg.model.backbone
    assert backbone.type in ('mmlk.RepLKNet', 'mmlk.RepNeXt')
    # nothing of the ResNet base survives the `_delete_` (e.g. depth, frozen_stages, style)
    assert not {'depth', 'style', 'num_stages'} & set(backbone)
    assert cfg.train_dataloader.batch_size == per_gpu
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=gpus * per_gpu)
    assert cfg.train_cfg.max_epochs == 12 * times
    assert cfg.param_scheduler[-1].end == 12 * times
    opt = cfg.optim_wrapper
    assert opt.optimizer.type == 'AdamW' and 'momentum' not in opt.optimizer
    assert cfg.model.neck.out_channels == 256 and cfg.model.neck.num_outs == 5
    names = checkpoint_names()
    if names:
        assert backbone.init_cfg.checkpoint in names, backbone.init_cfg
    # the normalisation is part of the model, so training, validation and test share it
    mean = [127.5] * 3 if '-xl_' in name else IMAGENET_MEAN
    assert cfg.model.data_preprocessor.mean == mean

    if name.startswith('cascade-mask-rcnn_'):
        heads = cfg.model.roi_head.bbox_head
        assert len(heads) == 3
        for head in heads:
            assert head.type == 'ConvFCBBoxHead'
            assert (head.num_shared_convs, head.num_shared_fcs) == (4, 1)
            assert head.loss_bbox == dict(type='GIoULoss', loss_weight=10.0) and head.reg_decoded_bbox
        choice = cfg.train_dataloader.dataset.pipeline[3]
        assert choice.type == 'RandomChoice' and len(choice.transforms) == 2
        assert [t.type for t in choice.transforms[1]] == ['RandomChoiceResize', 'RandomCrop',
                                                          'RandomChoiceResize']
        assert opt.optimizer.lr == 4e-4 and opt.paramwise_cfg.norm_decay_mult == 0.0
        assert cfg.param_scheduler[-1].milestones == [27, 33]
        if '-xl_' in name:
            assert backbone.arch == 'XL' and backbone.norm_intermediate_features is True
    elif name.startswith('fcos_'):
        assert cfg.model.type == 'FCOS'
        assert opt.optimizer.lr == 2e-4 and opt.clip_grad == dict(max_norm=35, norm_type=2)
        assert opt.paramwise_cfg.norm_decay_mult == 0.0
        assert cfg.param_scheduler[0].type == 'ConstantLR'
        assert cfg.param_scheduler[-1].milestones == [16, 22]
    else:
        assert cfg.model.type == 'MaskRCNN'
        assert opt.optimizer.lr == 2e-4 and opt.optimizer.weight_decay == 0.05
        assert cfg.param_scheduler[-1].milestones == [8, 11]


@pytest.mark.slow
@pytest.mark.parametrize('path', DET_CONFIGS, ids=config_ids(DET_CONFIGS))
def test_full_size_model_builds_and_predicts(path):
    import mmlk  # noqa: F401
    from mmdet.structures import DetDataSample

    cfg = Config.fromfile(path)
    if cfg.model.type == 'FCOS':
        cfg.model.test_cfg.update(CHEAP_TEST_CFG['rcnn'])
    else:
        cfg.model.test_cfg.rpn.update(CHEAP_TEST_CFG['rpn'])
        cfg.model.test_cfg.rcnn.update(CHEAP_TEST_CFG['rcnn'])
    model = build_full_size(cfg, 'mmdet').eval()
    # full size: the backbone has the published variant's widths, and the neck takes them
    arch = cfg.model.backbone.arch
    widths = published_widths(model.backbone, arch)
    assert list(model.backbone.out_channels) == list(widths) == list(cfg.model.neck.in_channels)

    size = (32, 48)  # small: the point is that the full-size graph runs, not its accuracy
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, *size), dtype=torch.uint8)
    sample = DetDataSample(metainfo=dict(img_id=0, img_shape=size, ori_shape=size, scale_factor=(1.0, 1.0),
                                         pad_shape=size, batch_input_shape=size))
    with torch.no_grad():
        result = model.test_step(dict(inputs=[image], data_samples=[sample]))[0]
    pred = result.pred_instances
    assert len(pred) > 0
    assert pred.bboxes.shape == (len(pred), 4) and torch.isfinite(pred.bboxes).all()
    assert ((pred.labels >= 0) & (pred.labels < 80)).all()
    if 'mask' in osp.basename(path):
        assert pred.masks.shape == (len(pred), *size)


# ---------------------------------------------------------------- mini COCO layout

def test_mini_coco_layout_is_what_mmdet_reads(tmp_path):
    import numpy as np
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    from mmlk.synthetic import COCO_CATEGORIES, make_coco
    root = str(tmp_path / 'coco')
    summary = make_coco(root, num_train=6, num_val=3, size=64, num_classes=4, seed=3)
    assert summary['counts']['train2017']['images'] == 6
    coco = COCO(osp.join(root, 'annotations', 'instances_train2017.json'))
    from mmdet.datasets import CocoDataset
    # all 80 categories, named and ordered as mmdet's COCO classes, with the official ids
    cats = coco.loadCats(coco.getCatIds())
    assert tuple(c['name'] for c in cats) == CocoDataset.METAINFO['classes']
    assert [c['id'] for c in cats] == [cid for _, cid in COCO_CATEGORIES]
    assert cats[-1]['id'] == 90
    # only the first 4 are painted
    used = {ann['category_id'] for ann in coco.loadAnns(coco.getAnnIds())}
    assert used and used <= {cid for _, cid in COCO_CATEGORIES[:4]}
    for img in coco.loadImgs(coco.getImgIds()):
        assert osp.isfile(osp.join(root, 'train2017', img['file_name']))
        assert (img['height'], img['width']) == (64, 85)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img['id']))
        assert anns, 'every image holds at least one object (mmdet filters empty ones)'
        for ann in anns:
            # bbox and area describe the polygons (as in COCO): what pycocotools rasterises from
            # them lies inside the box and covers about the stated area
            rles = mask_utils.frPyObjects(ann['segmentation'], img['height'], img['width'])
            decoded = mask_utils.decode(mask_utils.merge(rles)).astype(bool)
            ys, xs = np.nonzero(decoded)
            x, y, w, h = ann['bbox']
            assert xs.min() >= x - 1 and xs.max() + 1 <= x + w + 1, (ann['bbox'], xs.min(), xs.max())
            assert ys.min() >= y - 1 and ys.max() + 1 <= y + h + 1, (ann['bbox'], ys.min(), ys.max())
            assert 0.8 * ann['area'] <= decoded.sum() <= 1.2 * ann['area']
    # deterministic: the same arguments give byte-identical annotations
    again = str(tmp_path / 'coco_again')
    make_coco(again, num_train=6, num_val=3, size=64, num_classes=4, seed=3)
    for split in ('train2017', 'val2017'):
        name = f'instances_{split}.json'
        with open(osp.join(root, 'annotations', name)) as a, open(osp.join(again, 'annotations', name)) as b:
            assert a.read() == b.read()


# ---------------------------------------------------------------- one real run per family

@pytest.fixture(scope='module')
def mini_coco(tmp_path_factory) -> str:
    """4 train / 4 val images of 96x128 px in the COCO 2017 layout."""
    from mmlk.synthetic import make_coco
    root = str(tmp_path_factory.mktemp('data') / 'coco_mini')
    make_coco(root, num_train=4, num_val=4, size=96)
    return root


def det_mini_options(data_root: str) -> List[str]:
    """Point a config at the mini COCO: one epoch of 2 iterations (batch 2); tools/test.py evaluates."""
    ann_val = osp.join(data_root, 'annotations', 'instances_val2017.json')
    opts = [f'{loader}.dataset.data_root={data_root}'
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    opts += [f'val_evaluator.ann_file={ann_val}', f'test_evaluator.ann_file={ann_val}',
             # the published test resize (1333, 800) scaled to the 96x128 mini images
             cfg_option('val_dataloader.dataset.pipeline.1.scale', (128, 96)),
             cfg_option('test_dataloader.dataset.pipeline.1.scale', (128, 96)),
             'model.backbone.init_cfg=None', 'train_dataloader.batch_size=2',
             # no validation inside the training run: tools/test.py evaluates the checkpoint
             'train_cfg.max_epochs=1', 'train_cfg.val_interval=2',
             'default_hooks.checkpoint.interval=1', 'default_hooks.logger.interval=1',
             'randomness.seed=0']
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.num_workers=0', f'{loader}.persistent_workers=False']
    return opts


_TINY_REPLKNET_NECK = [cfg_option('model.neck.in_channels', REPLKNET_TINY_RUN['channels'])]
# Same detector structure (FPN levels, cascade stages, 4conv1fc heads, mask head), narrower: at the
# published 256/1024 widths the RoI heads dominate a CPU step.
W = 32
_NARROW_TWO_STAGE = [f'model.neck.out_channels={W}', f'model.rpn_head.in_channels={W}',
                     f'model.rpn_head.feat_channels={W}',
                     f'model.roi_head.bbox_roi_extractor.out_channels={W}',
                     f'model.roi_head.mask_roi_extractor.out_channels={W}',
                     f'model.roi_head.mask_head.in_channels={W}',
                     f'model.roi_head.mask_head.conv_out_channels={W}',
                     # fewer proposals and sampled RoIs than published (cost only)
                     'model.train_cfg.rpn_proposal.max_per_img=64', 'model.test_cfg.rpn.max_per_img=32',
                     'model.test_cfg.rcnn.score_thr=0.0', 'model.test_cfg.rcnn.max_per_img=20']
_CASCADE = _NARROW_TWO_STAGE + [
    opt for i in range(3) for opt in (f'model.roi_head.bbox_head.{i}.in_channels={W}',
                                      f'model.roi_head.bbox_head.{i}.conv_out_channels={W}',
                                      f'model.roi_head.bbox_head.{i}.fc_out_channels={2 * W}',
                                      f'model.train_cfg.rcnn.{i}.sampler.num=32')]
_MASK_RCNN = _NARROW_TWO_STAGE + [f'model.roi_head.bbox_head.in_channels={W}',
                                  f'model.roi_head.bbox_head.fc_out_channels={2 * W}',
                                  'model.train_cfg.rcnn.sampler.num=32']
FAMILY_RUNS = {
    'cascade-mask-rcnn': (
        'configs/replknet/cascade-mask-rcnn_replknet-31b_in1k-pre_fpn_4conv1fc-giou_32xb1-ms-crop-3x_coco.py',
        ['bbox', 'segm'],
        arch_options(REPLKNET_TINY_RUN) + _TINY_REPLKNET_NECK + _CASCADE + [
            # the DETR-style augmentation, scaled from 480-800 px short sides to the mini images
            cfg_option('train_dataloader.dataset.pipeline.3.transforms.0.0.scales', [(128, 80), (128, 96)]),
            cfg_option('train_dataloader.dataset.pipeline.3.transforms.1.0.scales', [(128, 64), (128, 80)]),
            cfg_option('train_dataloader.dataset.pipeline.3.transforms.1.1.crop_size', (48, 72)),
            cfg_option('train_dataloader.dataset.pipeline.3.transforms.1.2.scales', [(128, 80), (128, 96)])]),
    'fcos': (
        'configs/replknet/fcos_replknet-31b_in1k-pre_fpn_8xb2-ms-640-800-2x_coco.py',
        ['bbox'],
        arch_options(REPLKNET_TINY_RUN) + _TINY_REPLKNET_NECK + [
            # 64, not 32: the head's GroupNorm has 32 groups and needs 2+ values per group on the
            # 1x1 stride-128 level of the mini images
            f'model.neck.out_channels={2 * W}', f'model.bbox_head.in_channels={2 * W}',
            f'model.bbox_head.feat_channels={2 * W}', 'model.test_cfg.score_thr=0.0',
            'model.test_cfg.max_per_img=20',
            cfg_option('train_dataloader.dataset.pipeline.2.scales', [(128, 80), (128, 96)])]),
    'mask-rcnn': (
        'configs/repnext/mask-rcnn_repnext-m3_in1k-pre_fpn_8xb2-1x_coco.py',
        ['bbox', 'segm'],
        arch_options(REPNEXT_TINY_RUN) + [
            cfg_option('model.neck.in_channels', REPNEXT_TINY_RUN['embed_dims'])] + _MASK_RCNN + [
            cfg_option('train_dataloader.dataset.pipeline.2.scale', (128, 96))]),
}


@pytest.mark.slow
@pytest.mark.parametrize('family', sorted(FAMILY_RUNS))
def test_train_then_test_on_mini_coco(family, mini_coco, tmp_path):
    """tools/train.py (one epoch of 2 iterations) -> tools/test.py --eval on its checkpoint, in one process."""
    config, metrics, model_opts = FAMILY_RUNS[family]
    work_dir = str(tmp_path / 'work')
    opts = det_mini_options(mini_coco) + model_opts
    ckpt = osp.join(work_dir, 'epoch_1.pth')
    log, test_log = run_flow(['tools/train.py', config, '--work-dir', work_dir, '--cfg-options', *opts],
                             ['tools/test.py', config, ckpt, '--eval', *metrics, '--work-dir', work_dir,
                              '--cfg-options', *opts])
    losses = [float(v) for v in re.findall(r'Epoch\(train\)\s+\[1\]\[\s*\d+/2\].*?\bloss: ([0-9.naif]+)', log)]
    assert len(losses) == 2 and all(v == v and v != float('inf') for v in losses), log[-3000:]
    assert osp.isfile(ckpt)

    log = test_log
    found = {}
    for metric in metrics:
        match = re.search(rf'coco/{metric}_mAP: ([0-9.]+)', log)
        assert match is not None, (metric, log[-3000:])
        found[metric] = float(match.group(1))
        assert 0.0 <= found[metric] <= 1.0
    print(f'{family}: {config} on mini COCO after 2 iterations: {found}')
