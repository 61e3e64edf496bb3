"""Layer-wise lr decay (``mmlk.LearningRateDecayOptimWrapperConstructor``).

Layer ids are checked against upstream RepLKNet's table (RepLKNet-pytorch ``optim_factory.py``: stem 0,
stages 0/1 -> 1/2, stage 2 in groups of four ``blocks`` entries -> 3..11, transition 2 -> 11, stage 3 -> 12,
everything else 13) and the ConvNeXt-style RepNeXt table; the learning rates and weight decays are read
back from optimizers built through mmengine's ``build_optim_wrapper`` under the mmpretrain, mmseg and
mmdet default scopes, with the backbone inside each library's model (classifier, segmentor, detector).
"""
import math
from typing import Dict, List

import pytest
import torch
import torch.nn as nn
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

import mmlk  # noqa: F401  (registers the constructor)
from mmlk.engine import LearningRateDecayOptimWrapperConstructor
from mmlk.models import RepLKNet, RepNeXt

replknet_layer_ids, repnext_layer_ids = RepLKNet.layer_ids, RepNeXt.layer_ids

RATE, LR, WD = 0.7, 1e-3, 0.05
# Published depths with tiny widths and kernels: the layer ids only depend on the depths.
REPLKNET_ARCH = dict(large_kernel_sizes=[7, 7, 5, 3], layers=[2, 2, 18, 2], channels=[8, 16, 32, 64],
                     small_kernel=3, dw_ratio=1, ffn_ratio=1)
REPNEXT_ARCH = dict(embed_dims=[8, 16, 32, 64], depths=[3, 3, 13, 2])  # RepNeXt-M3 depths

# Upstream's RepLKNet table for depths (2, 2, 18, 2); every parameter whose name starts with a prefix
# must get that id (12 backbone layers, 13 = outside the backbone's layers).
REPLKNET_SPEC = {
    'stem.': 0,
    'stages.0.': 1, 'transitions.0.': 1,
    'stages.1.': 2, 'transitions.1.': 2,
    'stages.2.blocks.0.': 3, 'stages.2.blocks.3.': 3, 'stages.2.blocks.4.': 4, 'stages.2.blocks.7.': 4,
    'stages.2.blocks.8.': 5, 'stages.2.blocks.33.': 11, 'stages.2.blocks.35.': 11,
    'transitions.2.': 11,
    'stages.3.': 12,
}
# The official classifier (``num_classes > 0``) lives in the backbone but is not one of its layers.
REPLKNET_CLASSIFIER_SPEC = {'norm.': 13, 'head.': 13}
# RepNeXt-M3 depths (3, 3, 13, 2): stage 2 in min(9, 13) = 9 groups -> block j has id 3 + 9 * j // 13.
REPNEXT_SPEC = {
    'stem.': 0,
    'stages.0.': 1,
    'stages.1.downsample.': 2, 'stages.1.blocks.': 2,
    'stages.2.downsample.': 3, 'stages.2.blocks.0.': 3, 'stages.2.blocks.1.': 3, 'stages.2.blocks.2.': 4,
    'stages.2.blocks.6.': 7, 'stages.2.blocks.12.': 11,
    'stages.3.': 12,
}


def check_spec(ids: Dict[str, int], spec: Dict[str, int], prefix: str = '') -> None:
    for key, want in spec.items():
        names = [n for n in ids if n.startswith(prefix + key)]
        assert names, f'no parameter under {prefix + key}'
        got = {n: ids[n] for n in names if ids[n] != want}
        assert not got, f'{prefix + key}: expected layer id {want}, got {got}'


# ---------------------------------------------------------------- layer ids of the backbones

def test_replknet_layer_ids_follow_upstream_table():
    backbone = RepLKNet(arch=REPLKNET_ARCH, out_indices=(), num_classes=10)
    ids, num_layers = replknet_layer_ids([n for n, _ in backbone.named_parameters()])
    assert num_layers == 12
    check_spec(ids, {**REPLKNET_SPEC, **REPLKNET_CLASSIFIER_SPEC})
    assert set(ids.values()) == set(range(14))


def test_replknet_deploy_form_and_intermediate_norms_keep_their_layers():
    backbone = RepLKNet(arch=REPLKNET_ARCH, out_indices=(0, 1, 2, 3), deploy=True,
                        norm_intermediate_features=True)
    ids, num_layers = replknet_layer_ids([n for n, _ in backbone.named_parameters()])
    assert num_layers == 12
    assert ids['stages.2.blocks.4.large_kernel.lkb_reparam.weight'] == 4
    assert ids['stages.2.norm.weight'] == 11  # with the last group of stage 2
    assert ids['stages.0.norm.weight'] == 1 and ids['stages.3.norm.bias'] == 12


def test_repnext_layer_ids_follow_convnext_style_table():
    backbone = RepNeXt(arch=REPNEXT_ARCH)
    ids, num_layers = repnext_layer_ids([n for n, _ in backbone.named_parameters()])
    assert num_layers == 12
    check_spec(ids, REPNEXT_SPEC)


@pytest.mark.parametrize('depth', [9, 13, 15, 25, 35])
def test_repnext_stage2_groups_cover_every_layer_of_each_variant(depth):
    names = ['stem.stem.0.conv.weight'] + [f'stages.{s}.blocks.0.norm.weight' for s in (0, 1, 3)] + \
        [f'stages.2.blocks.{j}.norm.weight' for j in range(depth)]
    ids, num_layers = repnext_layer_ids(names)
    stage2 = [ids[f'stages.2.blocks.{j}.norm.weight'] for j in range(depth)]
    assert num_layers == 12
    assert sorted(set(stage2)) == list(range(3, 12))
    assert stage2 == sorted(stage2)  # monotone in depth


def test_stage_wise_ids():
    backbone = RepLKNet(arch=REPLKNET_ARCH, out_indices=(), num_classes=10)
    ids, num_layers = replknet_layer_ids([n for n, _ in backbone.named_parameters()], 'stage_wise')
    assert num_layers == 4
    check_spec(ids, {'stem.': 0, 'stages.0.': 1, 'transitions.0.': 1, 'stages.2.blocks.35.': 3,
                     'transitions.2.': 3, 'stages.3.': 4, 'head.': 5})


# ---------------------------------------------------------------- optimizers from each host scope

def host_model(scope: str, arch: str) -> nn.Module:
    """The backbone inside a classifier (mmpretrain), segmentor (mmseg) or detector (mmdet)."""
    if arch == 'replknet':
        backbone = dict(type='mmlk.RepLKNet', arch=REPLKNET_ARCH, out_indices=(0, 1, 2, 3))
    else:
        backbone = dict(type='mmlk.RepNeXt', arch=REPNEXT_ARCH, out_indices=(0, 1, 2, 3))
    if scope == 'mmpretrain':
        from mmpretrain.registry import MODELS
        if arch == 'replknet':
            backbone.update(out_indices=(), num_classes=10)  # the official classifier inside
            cfg = dict(type='ImageClassifier', backbone=backbone, neck=None, head=dict(type='ClsHead'))
        else:
            backbone.update(out_indices=(3, ))
            cfg = dict(type='ImageClassifier', backbone=backbone, neck=dict(type='GlobalAveragePooling'),
                       head=dict(type='mmlk.RepNeXtClsHead', num_classes=10, in_channels=64))
    elif scope == 'mmseg':
        from mmseg.registry import MODELS
        cfg = dict(type='EncoderDecoder', backbone=backbone,
                   decode_head=dict(type='FCNHead', in_channels=64, in_index=3, channels=8, num_convs=1,
                                    num_classes=3, norm_cfg=dict(type='BN')))
    else:
        from mmdet.registry import MODELS
        cfg = dict(
            type='RetinaNet',
            data_preprocessor=dict(type='DetDataPreprocessor'),
            backbone=backbone,
            neck=dict(type='FPN', in_channels=[8, 16, 32, 64], out_channels=16, start_level=1,
                      add_extra_convs='on_input', num_outs=3),
            bbox_head=dict(
                type='RetinaHead', num_classes=3, in_channels=16, stacked_convs=1, feat_channels=16,
                anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4, scales_per_octave=1,
                                      ratios=[1.0], strides=[8, 16, 32]),
                bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=[1.0] * 4)))
    return MODELS.build(cfg)


def optimizer_cfg(**paramwise) -> dict:
    return dict(constructor='mmlk.LearningRateDecayOptimWrapperConstructor',
                optimizer=dict(type='AdamW', lr=LR, weight_decay=WD),
                paramwise_cfg=dict(layer_decay_rate=RATE, norm_decay_mult=0.0, bias_decay_mult=0.0,
                                   **paramwise))


def group_of(optimizer: torch.optim.Optimizer) -> Dict[int, dict]:
    out = {}
    for group in optimizer.param_groups:
        for p in group['params']:
            assert id(p) not in out, 'a parameter is in two param groups'
            out[id(p)] = group
    return out


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmseg', 'mmdet'])
@pytest.mark.parametrize('arch', ['replknet', 'repnext'])
def test_lr_and_weight_decay_per_parameter_from_each_host(scope, arch):
    pytest.importorskip(scope)
    with DefaultScope.overwrite_default_scope(scope):
        model = host_model(scope, arch)
        wrapper = build_optim_wrapper(model, optimizer_cfg())
    groups = group_of(wrapper.optimizer)
    names = dict(model.named_parameters())
    assert len(groups) == len(names), 'every trainable parameter is optimised exactly once'

    ids = {n[len('backbone.'):]: None for n in names if n.startswith('backbone.')}
    ids, num_layers = (replknet_layer_ids if arch == 'replknet' else repnext_layer_ids)(list(ids))
    assert num_layers == 12
    check_spec(ids, REPLKNET_SPEC if arch == 'replknet' else REPNEXT_SPEC)
    norm_params = {id(p) for m in model.modules() if isinstance(m, (nn.modules.batchnorm._BatchNorm,
                                                                    nn.GroupNorm, nn.LayerNorm))
                   for p in m.parameters(recurse=False)}
    for name, param in names.items():
        group = groups[id(param)]
        layer = ids.get(name[len('backbone.'):], 13) if name.startswith('backbone.') else 13
        assert group['lr'] == pytest.approx(LR * RATE ** (13 - layer), rel=1e-9), name
        assert group['layer_id'] == layer, name
        if id(param) in norm_params or name.endswith('.bias'):
            assert group['weight_decay'] == 0.0, name
        else:
            assert group['weight_decay'] == pytest.approx(WD), name
    # The ends of the schedule: the stem moves 0.7**13 as fast as the heads.
    stem = next(p for n, p in names.items() if n.startswith('backbone.stem.'))
    # The heads: mmlk's RepLKNet classifier keeps its head inside the backbone (ClsHead has no weights).
    head = next((p for n, p in names.items() if not n.startswith('backbone.')), None)
    head = names['backbone.head.weight'] if head is None else head
    assert groups[id(stem)]['lr'] == pytest.approx(LR * RATE ** 13)
    assert groups[id(head)]['lr'] == pytest.approx(LR)


@pytest.mark.parametrize('arch', ['replknet', 'repnext'])
def test_mmpretrain_own_constructor_asks_the_backbone(arch):
    """mmpretrain's LearningRateDecayOptimWrapperConstructor calls ``get_layer_depth`` on the model (the
    classifier hands it to the backbone): it gets mmlk's table, the same rate for every parameter as mmlk's
    own constructor."""
    pytest.importorskip('mmpretrain')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = host_model('mmpretrain', arch)
        ours = group_of(build_optim_wrapper(model, optimizer_cfg()).optimizer)
        theirs = group_of(build_optim_wrapper(model, dict(
            constructor='LearningRateDecayOptimWrapperConstructor',
            optimizer=dict(type='AdamW', lr=LR, weight_decay=WD),
            paramwise_cfg=dict(layer_decay_rate=RATE))).optimizer)
    names = dict(model.named_parameters())
    assert len(theirs) == len(names)
    for name, param in names.items():
        assert theirs[id(param)]['lr'] == pytest.approx(ours[id(param)]['lr'], rel=1e-9), name
    assert min(g['lr'] for g in theirs.values()) == pytest.approx(LR * RATE ** 13)


def test_mmpretrain_own_replknet_gets_the_same_table():
    pytest.importorskip('mmpretrain')
    from mmpretrain.registry import MODELS
    arch = {k: REPLKNET_ARCH[k] for k in ('large_kernel_sizes', 'layers', 'channels', 'small_kernel',
                                           'dw_ratio')}
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(dict(type='ImageClassifier', backbone=dict(type='RepLKNet', arch=arch),
                                  neck=dict(type='GlobalAveragePooling'),
                                  head=dict(type='LinearClsHead', num_classes=10, in_channels=64)))
        assert type(model.backbone).__module__.startswith('mmpretrain')
        wrapper = build_optim_wrapper(model, optimizer_cfg())
    groups = group_of(wrapper.optimizer)
    for name, param in model.named_parameters():
        if name.startswith('backbone.stages.2.blocks.35.') or name.startswith('backbone.transitions.2.'):
            assert groups[id(param)]['layer_id'] == 11, name
        if name.startswith('backbone.stem.'):
            assert groups[id(param)]['lr'] == pytest.approx(LR * RATE ** 13), name


def test_bare_backbone_frozen_parameters_and_custom_keys():
    backbone = RepLKNet(arch=REPLKNET_ARCH, out_indices=(), num_classes=10, frozen_stages=1)
    wrapper = build_optim_wrapper(backbone, optimizer_cfg(custom_keys={'head': dict(lr_mult=0.1)}))
    groups = group_of(wrapper.optimizer)
    trainable = [p for p in backbone.parameters() if p.requires_grad]
    assert len(groups) == len(trainable) < len(list(backbone.parameters()))
    assert all(not p.requires_grad for p in backbone.stem.parameters())
    assert groups[id(backbone.head.weight)]['lr'] == pytest.approx(LR * 0.1)
    assert groups[id(backbone.stages[1].blocks[0].pw1.conv.weight)]['lr'] == pytest.approx(LR * RATE ** 11)


def test_one_optimizer_step_applies_the_scaled_rates():
    """A real optimizer step: with SGD (no momentum) each update equals -lr_scale * lr * grad."""
    backbone = RepLKNet(arch=REPLKNET_ARCH, out_indices=(), num_classes=10)
    cfg = dict(constructor='mmlk.LearningRateDecayOptimWrapperConstructor',
               optimizer=dict(type='SGD', lr=0.1), paramwise_cfg=dict(layer_decay_rate=0.5))
    wrapper = build_optim_wrapper(backbone, cfg)
    before = {n: p.detach().clone() for n, p in backbone.named_parameters()}
    logits = backbone(torch.randn(2, 3, 32, 32))[-1]
    wrapper.backward(logits.square().mean())
    wrapper.step()  # (update_params would also zero the gradients the check below needs)
    for name, param in [('stem.0.conv.weight', backbone.stem[0].conv.weight),
                        ('stages.2.blocks.8.pw1.conv.weight', backbone.stages[2].blocks[8].pw1.conv.weight),
                        ('head.weight', backbone.head.weight)]:
        spec = {**REPLKNET_SPEC, **REPLKNET_CLASSIFIER_SPEC}
        layer = spec[next(k for k in spec if name.startswith(k))]
        want = before[name] - 0.1 * 0.5 ** (13 - layer) * param.grad
        torch.testing.assert_close(param.detach(), want, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize('paramwise, error', [
    (dict(), ValueError),
    (dict(layer_decay_rate=1.5), ValueError),
    (dict(layer_decay_rate=0.7, decay_type='block_wise'), ValueError),
])
def test_invalid_settings_are_rejected(paramwise, error):
    with pytest.raises(error):
        LearningRateDecayOptimWrapperConstructor(dict(optimizer=dict(type='AdamW', lr=LR)), paramwise)


def test_unsupported_models_are_rejected_with_a_message():
    ctor = LearningRateDecayOptimWrapperConstructor(dict(optimizer=dict(type='AdamW', lr=LR)),
                                                    dict(layer_decay_rate=0.7))
    with pytest.raises(TypeError, match='no `backbone`'):
        ctor(nn.Linear(2, 2))

    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3))

    with pytest.raises(TypeError, match='RepLKNet'):
        ctor(Wrapper())


def test_lr_scale_table_is_geometric():
    backbone = RepNeXt(arch=REPNEXT_ARCH)
    wrapper = build_optim_wrapper(backbone, optimizer_cfg())
    scales: List[float] = sorted({g['lr_scale'] for g in wrapper.optimizer.param_groups})
    # The bare backbone has layers 0..12 (nothing at 13): 13 distinct scales 0.7**13 .. 0.7**1.
    assert len(scales) == 13
    for lo, hi in zip(scales, scales[1:]):
        assert math.isclose(lo / hi, RATE, rel_tol=1e-9)
