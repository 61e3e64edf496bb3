"""UniRepLKNet's configs (mmpretrain, mmseg 1.x, mmdet 3.x): they load, pair with checkpoints.yaml, and build the
published models; the published parameter counts are reproduced (models built on the 'meta' device: no memory).

Which form each published count uses (measured here, stated in the family's docs page):

* classifiers: the merged form (the official README's #params), exact to the README's 0.01M;
* UperNet: the merged backbone with the decode head, without the auxiliary FCN head (an inference model),
  rounded to the README's 1M (XL 425M from the L 640 setting with the XL backbone: no upstream XL config);
* Cascade Mask R-CNN: the merged form, within 1% (T 88.45M is printed as 89M, L 275.4M as 276M upstream).
"""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from _helpers import REPO, build_full_size, checkpoint_names, config_ids

CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'unireplknet', '*.py')))
DEPLOY = sorted(glob.glob(osp.join(REPO, 'configs', 'unireplknet', 'deploy', '*.py')))
UPERNET_M = dict(t=61, s=86, b=130, l=254)  # published (XL 425M: no upstream config, weights 'TBA')
CASCADE_M = dict(t=89, s=113, b=155, l=276, xl=443)
CLASSIFIER_MERGED_M = dict(a=4.44, f=6.24, p=10.74, n=18.32, t=31.04, s=55.65, b=98.01, l=218.45, xl=386.53)


def _params(model: torch.nn.Module, skip: str = '') -> float:
    return sum(p.numel() for n, p in model.named_parameters() if not (skip and n.startswith(skip))) / 1e6


def _build(path: str, **backbone):
    import mmlk  # noqa: F401
    cfg = Config.fromfile(path)
    cfg.model.backbone.update(backbone)
    with torch.device('meta'):
        return cfg, build_full_size(cfg, cfg.default_scope)


def test_every_released_setting_has_a_config():
    names = {osp.basename(p) for p in CONFIGS}
    assert sum(n.startswith('upernet_') for n in names) == 6  # the 7 published settings but XL-22K 640 (no upstream config)
    assert sum(n.startswith('cascade-mask-rcnn_') for n in names) == 6
    assert sum(n.startswith('unireplknet-') for n in names) == 14
    assert {osp.basename(p) for p in DEPLOY} == {n for n in names if n.startswith('unireplknet-')}


@pytest.mark.parametrize('path', CONFIGS + DEPLOY, ids=config_ids(CONFIGS + DEPLOY))
def test_config_loads_and_names_a_released_checkpoint(path):
    cfg = Config.fromfile(path)
    assert cfg.custom_imports == dict(imports=['mmlk'], allow_failed_imports=False)
    backbone = cfg.model.backbone
    assert backbone.type == 'mmlk.UniRepLKNet'
    deploy = '/deploy/' in path
    assert bool(backbone.get('deploy')) == deploy
    init = backbone.get('init_cfg')
    names = checkpoint_names()
    if init and names:
        assert init.checkpoint in names, init
    if osp.basename(path).startswith(('upernet_', 'cascade-')):
        assert backbone.norm_cfg.type == 'SyncBN' and backbone.out_indices == (0, 1, 2, 3)
    if osp.basename(path).startswith('upernet_'):
        # the crop the name states is what the training pipeline cuts and the preprocessor pads to
        crop = int(path.rsplit('x', 1)[1][:-3])
        crops = [s.crop_size for s in cfg.train_dataloader.dataset.pipeline if s.type == 'RandomCrop']
        assert crops == [(crop, crop)] and tuple(cfg.model.data_preprocessor.size) == (crop, crop)
        assert cfg.train_dataloader.batch_size == 2


@pytest.mark.parametrize('path', DEPLOY, ids=config_ids(DEPLOY))
def test_classifier_configs_reproduce_the_published_merged_parameter_counts(path):
    cfg, model = _build(path)
    variant = cfg.model.backbone.arch
    if cfg.model.backbone.num_classes == 1000:
        assert round(_params(model), 2) == CLASSIFIER_MERGED_M[variant]
    else:  # the ImageNet-22k pretraining head (21841 classes)
        assert cfg.model.backbone.num_classes == 21841
        assert round(_params(model) - 21841 * (model.backbone.head.in_features + 1) / 1e6, 2) == pytest.approx(
            CLASSIFIER_MERGED_M[variant] - 1000 * (model.backbone.head.in_features + 1) / 1e6, abs=0.011)


@pytest.mark.parametrize('path', [p for p in CONFIGS if osp.basename(p).startswith('upernet_')],
                         ids=config_ids([p for p in CONFIGS if osp.basename(p).startswith('upernet_')]))
def test_upernet_configs_reproduce_the_published_parameter_counts(path):
    cfg, model = _build(path, deploy=True)
    variant = cfg.model.backbone.arch
    assert round(_params(model, skip='auxiliary_head.')) == UPERNET_M[variant]
    assert list(cfg.model.decode_head.in_channels) == model.backbone.out_channels


@pytest.mark.parametrize('path', [p for p in CONFIGS if osp.basename(p).startswith('cascade-')],
                         ids=config_ids([p for p in CONFIGS if osp.basename(p).startswith('cascade-')]))
def test_cascade_mask_rcnn_configs_reproduce_the_published_parameter_counts(path):
    cfg, model = _build(path, deploy=True)
    variant = cfg.model.backbone.arch
    assert _params(model) == pytest.approx(CASCADE_M[variant], rel=0.01)
    assert list(cfg.model.neck.in_channels) == model.backbone.out_channels


def test_upernet_xl_published_count_from_the_l_640_setting():
    """XL-22K 640 has no upstream config (nor weights): the L 640 config with the XL backbone and heads sized to
    its stages gives the published 425M (merged, without the auxiliary head)."""
    path = osp.join(REPO, 'configs', 'unireplknet', 'upernet_unireplknet-l_in21k-pre_8xb2-160k_ade20k-640x640.py')
    import mmlk  # noqa: F401
    cfg = Config.fromfile(path)
    cfg.model.backbone.update(arch='xl', deploy=True)
    cfg.model.decode_head.in_channels = [256, 512, 1024, 2048]
    cfg.model.auxiliary_head.in_channels = 1024
    with torch.device('meta'):
        model = build_full_size(cfg, 'mmseg')
    assert round(_params(model, skip='auxiliary_head.')) == 425
