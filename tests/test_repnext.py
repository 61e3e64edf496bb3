"""Tests of the RepNeXt backbone, its classifier head and its use from mmdet, mmseg, mmpretrain and timm.

Expected key names and parameter counts are written from shared/docs/REFERENCE.md section 2 (the
released checkpoints and the paper), independently of mmlk's modules.
"""
import copy
from typing import Dict, List, Tuple

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

import mmlk  # noqa: F401  (registers the classes and the timm names)
from mmlk.models.repnext.model import Downsample, MetaNeXtBlock, RepDWConvM, RepDWConvS, RepNeXt
from mmlk.models.repnext.timm import TimmRepNeXt
from mmlk.models.repnext import RepNeXtClsHead
from mmlk.ops import LargeKernelDWConv2d

from _helpers import REPNEXT_TINY as TINY
from _helpers import (build_mask_detector, build_segmentor, det_data, merged_outputs, randomise_bn, ranged_images,
                      rel_err, seg_data, train_and_predict)

TINY_CHANNELS = [16, 32, 64, 128]

# Paper / README numbers (millions of parameters, ImageNet classifier with 1000 classes): train-time and
# upstream-fused, written to the precision the paper gives.
PARAMS = {
    'm0': ('2.716', '2.333'), 'm1': ('5.323', '4.830'), 'm2': ('7.049', '6.473'),
    'm3': ('8.467', '7.819'), 'm4': ('14.08', '13.342'), 'm5': ('22.709', '21.738'),
}
DIMS = {'m0': [40, 80, 160, 320], 'm1': [48, 96, 192, 384], 'm2': [56, 112, 224, 448],
        'm3': [64, 128, 256, 512], 'm4': [64, 128, 256, 512], 'm5': [80, 160, 320, 640]}
DEPTHS = {'m0': [2, 2, 9, 1], 'm1': [3, 3, 15, 2], 'm2': [3, 3, 15, 2], 'm3': [3, 3, 13, 2],
          'm4': [5, 5, 25, 4], 'm5': [7, 7, 35, 2]}


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def rounded(n: int, shown: str) -> str:
    decimals = len(shown.split('.')[1])
    return f'{n / 1e6:.{decimals}f}'


# --------------------------------------------------------------------------------------- parameters
@pytest.mark.parametrize('arch', sorted(PARAMS))
def test_param_counts_train_and_fused(arch):
    train_shown, fused_shown = PARAMS[arch]
    with torch.device('meta'):  # counting needs no data: fast even for M5
        model = TimmRepNeXt(arch, num_classes=1000, fold_block_norm=False)
        n_train = count(model)
        model.switch_to_deploy()
        n_fused = count(model)
        # default merged form (also folds the block norms); its layout equals switch_to_deploy()'s,
        # see test_deploy_layout_is_upstream_fused_layout_and_loads
        n_full = count(TimmRepNeXt(arch, num_classes=1000, deploy=True))
    assert rounded(n_train, train_shown) == train_shown
    assert rounded(n_fused, fused_shown) == fused_shown
    # The extra fold removes exactly the affine parameters of one norm per block (C) and per
    # downsample (2 C_prev = C), computed here from the documented variant table.
    dims, depths = DIMS[arch], DEPTHS[arch]
    saved = sum(2 * c * d for c, d in zip(dims, depths)) + sum(2 * c for c in dims[1:])
    assert n_fused - n_full == saved


def test_backbone_has_no_num_classes_and_counts_match_classifier():
    backbone = RepNeXt('m0')
    assert not hasattr(backbone, 'num_classes')
    head = RepNeXtClsHead(1000, 320)
    with torch.device('meta'):
        timm_like = TimmRepNeXt('m0', num_classes=1000)
    assert count(backbone) + count(head) == count(timm_like)


# --------------------------------------------------------------------------------------- key layout
def documented_keys(dims: List[int], depths: List[int]) -> Dict[str, Tuple[int, ...]]:
    """Expected backbone keys with shapes, from the documented structure (REFERENCE.md section 2)."""
    keys: Dict[str, Tuple[int, ...]] = {}

    def bn(p: str, c: int) -> None:
        for f in ('weight', 'bias', 'running_mean', 'running_var'):
            keys[f'{p}.{f}'] = (c, )
        keys[f'{p}.num_batches_tracked'] = ()

    def conv_norm(p: str, shape: Tuple[int, ...]) -> None:
        keys[f'{p}.conv.weight'] = shape
        bn(f'{p}.norm', shape[0])

    def dw(p: str, c: int, kh: int, kw: int, bias: bool) -> None:
        keys[f'{p}.weight'] = (c, 1, kh, kw)
        if bias:
            keys[f'{p}.bias'] = (c, )

    def group_s(p: str, c: int, stride: int) -> None:
        dw(f'{p}.conv_3_3', c, 3, 3, True)
        dw(f'{p}.conv_3_w', c, 1, 3, stride == 1)  # bias-free in the serial stride-2 form
        dw(f'{p}.conv_3_h', c, 3, 1, stride == 1)
        dw(f'{p}.conv_2_2', c, 2, 2, True)

    def group_m(p: str, c: int) -> None:
        dw(f'{p}.conv_7_7', c, 7, 7, True)
        dw(f'{p}.conv_5_3', c, 5, 3, True)
        dw(f'{p}.conv_3_5', c, 3, 5, True)
        for name, kh, kw in (('conv_7_w', 1, 7), ('conv_7_h', 7, 1), ('conv_5_w', 1, 5), ('conv_5_h', 5, 1)):
            dw(f'{p}.{name}', c, kh, kw, False)

    def mixer(p: str, c: int) -> None:
        conv_norm(f'{p}.channel_mixer.0', (2 * c, c, 1, 1))
        conv_norm(f'{p}.channel_mixer.2', (c, 2 * c, 1, 1))

    conv_norm('stem.stem.0', (dims[0] // 2, 3, 3, 3))
    conv_norm('stem.stem.2', (dims[0], dims[0] // 2, 3, 3))
    for i, (c, d) in enumerate(zip(dims, depths)):
        if i > 0:
            p = f'stages.{i}.downsample'
            group_s(f'{p}.token_mixer.conv_s', dims[i - 1], 2)
            group_m(f'{p}.token_mixer.conv_m', dims[i - 1])
            bn(f'{p}.norm', c)
            mixer(p, c)
        q = c // 4
        for j in range(d):
            p = f'stages.{i}.blocks.{j}'
            group_s(f'{p}.token_mixer.conv_s', q, 1)
            group_m(f'{p}.token_mixer.conv_m', q)
            dw(f'{p}.token_mixer.conv_l.0', q, 1, 11, True)
            dw(f'{p}.token_mixer.conv_l.1', q, 11, 1, True)
            bn(f'{p}.norm', c)
            mixer(p, c)
    return keys


def test_key_layout_matches_documented_checkpoint_layout():
    model = RepNeXt('m0')
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == documented_keys(DIMS['m0'], DEPTHS['m0'])


def test_key_spot_checks_from_reference():
    keys = set(TimmRepNeXt('m0', num_classes=1000).state_dict())
    for k in ['stem.stem.0.conv.weight', 'stem.stem.0.norm.running_var', 'stem.stem.2.conv.weight',
              'stages.0.blocks.0.token_mixer.conv_s.conv_3_3.weight',
              'stages.0.blocks.0.token_mixer.conv_s.conv_3_3.bias',
              'stages.0.blocks.0.token_mixer.conv_s.conv_3_w.weight',
              'stages.0.blocks.0.token_mixer.conv_s.conv_3_h.weight',
              'stages.0.blocks.0.token_mixer.conv_s.conv_2_2.weight',
              'stages.0.blocks.0.token_mixer.conv_m.conv_7_7.weight',
              'stages.0.blocks.0.token_mixer.conv_m.conv_5_3.weight',
              'stages.0.blocks.0.token_mixer.conv_m.conv_3_5.weight',
              'stages.0.blocks.0.token_mixer.conv_m.conv_7_w.weight',
              'stages.0.blocks.0.token_mixer.conv_m.conv_7_h.weight',
              'stages.0.blocks.0.token_mixer.conv_m.conv_5_w.weight',
              'stages.0.blocks.0.token_mixer.conv_m.conv_5_h.weight',
              'stages.0.blocks.0.token_mixer.conv_l.0.weight', 'stages.0.blocks.0.token_mixer.conv_l.0.bias',
              'stages.0.blocks.0.token_mixer.conv_l.1.weight', 'stages.0.blocks.0.norm.weight',
              'stages.0.blocks.0.channel_mixer.0.conv.weight', 'stages.0.blocks.0.channel_mixer.0.norm.weight',
              'stages.0.blocks.0.channel_mixer.2.conv.weight',
              'stages.1.downsample.token_mixer.conv_s.conv_3_3.weight', 'stages.1.downsample.norm.weight',
              'stages.1.downsample.channel_mixer.0.conv.weight',
              'stages.1.downsample.channel_mixer.2.norm.running_mean',
              'head.head.norm.weight', 'head.head.linear.weight', 'head.head.linear.bias',
              'head.head_dist.norm.running_var', 'head.head_dist.linear.weight']:
        assert k in keys, k
    assert not any(k.startswith('stages.0.downsample') for k in keys)
    assert 'stages.1.downsample.token_mixer.conv_s.conv_3_w.bias' not in keys


def test_deploy_layout_is_upstream_fused_layout_and_loads():
    model = TimmRepNeXt(TINY, num_classes=7, fold_block_norm=False)
    randomise_bn(model)
    model.eval().switch_to_deploy()
    sd = model.state_dict()
    for k in ['stem.stem.0.weight', 'stem.stem.0.bias', 'stages.0.blocks.0.token_mixer.conv_s.weight',
              'stages.0.blocks.0.token_mixer.conv_m.bias', 'stages.0.blocks.0.token_mixer.conv_l.1.weight',
              'stages.0.blocks.0.norm.running_var', 'stages.0.blocks.0.channel_mixer.0.weight',
              'stages.1.downsample.token_mixer.conv_m.weight', 'head.weight', 'head.bias']:
        assert k in sd, k
    assert sd['stages.1.downsample.token_mixer.conv_s.weight'].shape == (16, 1, 3, 3)
    for fold in (False, True):
        src = TimmRepNeXt(TINY, num_classes=7, fold_block_norm=fold).eval()
        src.switch_to_deploy()
        direct = TimmRepNeXt(TINY, num_classes=7, fold_block_norm=fold, deploy=True)
        direct.load_state_dict(src.state_dict(), strict=True)
        block_norm_keys = [k for k in src.state_dict() if '.norm.' in k and 'stages.' in k]
        assert bool(block_norm_keys) != fold
        x = torch.randn(1, 3, 32, 32)
        with torch.no_grad():
            assert torch.equal(direct.eval()(x), src(x))


# --------------------------------------------------------------------------------------- merging
@pytest.mark.parametrize('cls,stride', [(RepDWConvS, 1), (RepDWConvS, 2), (RepDWConvM, 1), (RepDWConvM, 2)])
def test_branch_groups_merge_exactly(cls, stride):
    torch.manual_seed(0)
    group = cls(8, stride=stride, merge_branches=False)
    x = torch.randn(2, 8, 15, 12)
    with torch.no_grad():
        ref = group(x)
        merged = group.switch_to_deploy()
        assert isinstance(merged, nn.Conv2d) and merged.kernel_size == (group.kernel_size, ) * 2
        assert merged.stride == (stride, stride)
        assert rel_err(merged(x), ref) <= 1e-5


@pytest.mark.parametrize('fold', [False, True])
@pytest.mark.parametrize('kind', ['block', 'downsample'])
def test_unit_merge_with_random_bn(kind, fold):
    torch.manual_seed(1)
    if kind == 'block':
        unit, x = MetaNeXtBlock(16, fold_block_norm=fold, merge_branches=False), torch.randn(2, 16, 13, 10)
    else:
        unit, x = Downsample(16, fold_block_norm=fold, merge_branches=False), torch.randn(2, 16, 13, 10)
    randomise_bn(unit)
    unit.eval()
    with torch.no_grad():
        ref = unit(x)
        unit.switch_to_deploy()
        assert rel_err(unit(x), ref) <= 1e-5
    assert isinstance(unit.norm, nn.Identity) == fold
    assert not any(isinstance(m, (RepDWConvS, RepDWConvM)) for m in unit.modules())


@pytest.mark.parametrize('arch', ['m0', TINY])
@pytest.mark.parametrize('fold', [False, True])
def test_whole_model_merge_equivalence(arch, fold):
    torch.manual_seed(2)
    model = TimmRepNeXt(arch, num_classes=10, fold_block_norm=fold)
    randomise_bn(model)
    ref, out = merged_outputs(model, torch.randn(2, 3, 40, 36))
    assert rel_err(out, ref) <= 1e-5
    assert not any(isinstance(m, _BatchNorm) for m in model.modules()) or not fold


def test_head_merges_two_heads_into_one_linear():
    head = RepNeXtClsHead(6, 24)
    randomise_bn(head)
    head.eval()
    feats = (torch.randn(4, 24), )
    with torch.no_grad():
        both = (head.head(feats[0]) + head.head_dist(feats[0])) / 2
        ref = head(feats)
        head.switch_to_deploy()
        head.switch_to_deploy()
        out = head(feats)
    assert torch.equal(ref, both)
    assert rel_err(out, ref) <= 1e-5
    assert set(head.state_dict()) == {'weight', 'bias'}


def test_head_build_kwargs_are_the_real_call_and_rebuild_it():
    """build_kwargs of the head come from its constructor call (every parameter, none hand-kept): a twin built
    from them is the same head, and a deploy switch is recorded."""
    import inspect
    head = RepNeXtClsHead(7, 16, distillation=True, topk=(1, 3), cal_acc=True)
    params = set(inspect.signature(RepNeXtClsHead.__init__).parameters) - {'self'}
    assert set(head.build_kwargs) == params
    assert head.build_kwargs['topk'] == (1, 3) and head.build_kwargs['distillation'] is True
    twin = type(head)(**head.build_kwargs)
    assert (twin.num_classes, twin.in_channels, twin.topk, twin.cal_acc) == (7, 16, (1, 3), True)
    head.switch_to_deploy()
    assert head.build_kwargs['deploy'] is True
    merged_twin = type(head)(**head.build_kwargs)
    assert set(merged_twin.state_dict()) == set(head.state_dict())


def test_head_distillation_training_returns_both_heads():
    head = RepNeXtClsHead(6, 24, distillation=True).train()
    x = torch.randn(4, 24)
    out = head(x)
    assert isinstance(out, tuple) and len(out) == 2
    head.eval()
    with torch.no_grad():
        assert torch.equal(head(x), (head.head(x) + head.head_dist(x)) / 2)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', None])
def test_head_loss_builds_mmpretrains_loss_whatever_default_scope_the_process_has(scope):
    """The loss is built at its first use, where the default scope is whatever the process last set (an mmdet
    test or tool before it: 'mmdet', which has no LabelSmoothLoss; found when the suite ran in parallel)."""
    from mmengine.registry import DefaultScope
    from mmpretrain.structures import DataSample
    head = RepNeXtClsHead(6, 24, loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')).train()
    samples = [DataSample().set_gt_label(i % 6) for i in range(4)]
    if scope is None:
        losses = head.loss((torch.randn(4, 24), ), samples)
    else:
        with DefaultScope.overwrite_default_scope(scope):
            losses = head.loss((torch.randn(4, 24), ), samples)
    assert type(head._loss_module).__name__ == 'LabelSmoothLoss' and torch.isfinite(losses['loss'])


# --------------------------------------------------------------------------------------- merged training
@pytest.mark.parametrize('cls,stride', [(RepDWConvS, 1), (RepDWConvS, 2), (RepDWConvM, 1), (RepDWConvM, 2)])
def test_merged_training_path_unit_forward_and_gradients(cls, stride):
    torch.manual_seed(3)
    branch = cls(8, stride=stride, merge_branches=False)
    merged = copy.deepcopy(branch)
    merged.merge_branches = True
    x = torch.randn(2, 8, 14, 11)
    xb, xm = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_b, out_m = branch(xb), merged(xm)
    assert rel_err(out_m, out_b) <= 1e-5
    w = torch.randn_like(out_b)
    (out_b * w).sum().backward()
    (out_m * w).sum().backward()
    assert rel_err(xm.grad, xb.grad) <= 1e-5
    grads_b = dict(branch.named_parameters())
    for name, p in merged.named_parameters():  # every branch weight and bias gets the same gradient
        assert rel_err(p.grad, grads_b[name].grad) <= 1e-5, name


def test_merged_training_path_whole_model_forward_and_gradients():
    torch.manual_seed(3)
    branch = RepNeXt(TINY, merge_branches=False)
    merged = RepNeXt(TINY, merge_branches=True)
    merged.load_state_dict(branch.state_dict())
    branch.train()
    merged.train()
    x = torch.randn(2, 3, 45, 38)
    outs_b, outs_m = branch(x), merged(x)
    for a, b in zip(outs_m, outs_b):
        assert rel_err(a, b) <= 1e-5
    weights = [torch.randn_like(o) for o in outs_b]
    sum((o * w).sum() for o, w in zip(outs_b, weights)).backward()
    sum((o * w).sum() for o, w in zip(outs_m, weights)).backward()
    grads_b = {n: p.grad for n, p in branch.named_parameters()}
    scale = max(g.abs().max() for g in grads_b.values())
    # Biases right before a train-mode BN have (mathematically) zero gradient, so compare against the
    # model's gradient scale rather than each tensor's own.
    for name, p in merged.named_parameters():
        assert (p.grad - grads_b[name]).abs().max() <= 1e-5 * scale, name
    for (n, a), (_, b) in zip(merged.named_buffers(), branch.named_buffers()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), n  # running statistics updated alike


def test_merge_branches_is_the_default():
    model = RepNeXt(TINY)
    assert all(m.merge_branches for m in model.modules() if isinstance(m, (RepDWConvS, RepDWConvM)))


# --------------------------------------------------------------------------------------- arguments
@pytest.mark.parametrize('kwargs,exc,match', [
    (dict(arch='m9'), ValueError, 'm0'),
    (dict(arch=dict(embed_dims=[16, 32], depths=[1])), ValueError, 'equally long'),
    (dict(arch=dict(embed_dims=[18, 36], depths=[1, 1])), ValueError, 'divisible by 4'),
    (dict(arch=dict(embed_dims=[16, 48], depths=[1, 1])), ValueError, 'twice'),
    (dict(arch=dict(embed_dims=[16, 32], depth=[1, 1])), ValueError, 'depths'),
    (dict(arch=dict(embed_dims=[16, 32], depths=[1, 0])), ValueError, 'positive'),
    (dict(arch=3), TypeError, 'str or a dict'),
])
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        RepNeXt(**{'arch': TINY, **kwargs})


def test_arch_dict_and_string_agree():
    a = RepNeXt('M0')
    b = RepNeXt(dict(embed_dims=DIMS['m0'], depths=DEPTHS['m0'], mlp_ratio=2))
    assert a.state_dict().keys() == b.state_dict().keys()
    assert count(a) == count(b)


def test_norm_cfg_drop_path_and_lk_impl():
    model = RepNeXt(TINY, norm_cfg=dict(type='BN', eps=1e-3, momentum=0.03), drop_path_rate=0.2,
                    lk_impl='torch')
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(m.eps == 1e-3 and m.momentum == 0.03 for m in bns)
    drop_rates = [m.drop_prob for m in model.modules() if type(m).__name__ == 'DropPath']
    assert len(drop_rates) == sum(TINY['depths']) - 1 and max(drop_rates) == pytest.approx(0.2)
    lks = [m for m in model.modules() if isinstance(m, LargeKernelDWConv2d)]
    names = {n.split('.')[-1] for n, m in model.named_modules() if isinstance(m, LargeKernelDWConv2d)}
    assert {'conv_7_7', 'conv_7_w', 'conv_7_h', '0', '1'} <= names  # conv_l.0 / conv_l.1 too
    assert all(m.impl == 'torch' for m in lks)
    assert not any(isinstance(m, LargeKernelDWConv2d) for n, m in model.named_modules() if 'downsample' in n)
    model.switch_to_deploy()
    merged_m = model.stages[0].blocks[0].token_mixer.conv_m
    assert isinstance(merged_m, LargeKernelDWConv2d) and merged_m.impl == 'torch'


def test_released_layouts_load_through_mmlk_loader(tmp_path):
    """Training-form classifier file (state dict under 'model', as released) into the backbone and into
    merged models; upstream's fused layout (block norms kept) into the default merged form."""
    from mmlk.models.weights import load_pretrained
    torch.manual_seed(6)
    src = TimmRepNeXt(TINY, num_classes=10)
    randomise_bn(src)
    src.eval()
    released = tmp_path / 'repnext_tiny_distill_300e.pth'
    torch.save({'model': src.state_dict()}, released)
    x = torch.randn(1, 3, 48, 40)
    with torch.no_grad():
        ref_logits = src(x)
        ref_feats = RepNeXt.forward(src, x)  # the backbone part of the same weights

    backbone = RepNeXt(TINY, out_indices=(-1, ))
    report = load_pretrained(backbone, str(released))
    assert not report['missing'] and not report['unexpected'] and report['dropped_head']
    merged = RepNeXt(TINY, out_indices=(-1, ), deploy=True)
    load_pretrained(merged, str(released))  # merged on the fly through a training-form twin
    merged_cls = TimmRepNeXt(TINY, num_classes=10, deploy=True)
    load_pretrained(merged_cls, str(released))

    upstream_fused = TimmRepNeXt(TINY, num_classes=10, fold_block_norm=False)
    upstream_fused.load_state_dict(src.state_dict())
    upstream_fused.eval().switch_to_deploy()
    fused_file = tmp_path / 'fused.pth'
    torch.save(upstream_fused.state_dict(), fused_file)
    refolded = TimmRepNeXt(TINY, num_classes=10, deploy=True)
    load_pretrained(refolded, str(fused_file))
    with torch.no_grad():
        assert torch.equal(backbone.eval()(x)[0], ref_feats[0])
        assert rel_err(merged.eval()(x)[0], ref_feats[0]) <= 1e-5
        assert rel_err(merged_cls.eval()(x), ref_logits) <= 1e-5
        assert rel_err(refolded.eval()(x), ref_logits) <= 1e-5


# --------------------------------------------------------------------------------------- host libraries
def test_mmdet_mask_rcnn_train_and_predict():
    model = build_mask_detector('_base_/models/mask-rcnn_r50_fpn.py',
                                dict(type='mmlk.RepNeXt', arch=TINY, out_indices=(0, 1, 2, 3), norm_cfg=dict(type='BN')),
                                in_channels=TINY_CHANNELS)
    assert type(model.backbone) is RepNeXt
    losses, preds = train_and_predict(model, det_data(), lr=1e-3)
    assert {'loss_rpn_cls', 'loss_cls', 'loss_mask'} <= set(losses)
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert len(preds) == 2 and 'pred_instances' in preds[0]


def test_mmseg_semantic_fpn_train_and_predict():
    norm = dict(type='BN', requires_grad=True)
    model = build_segmentor(
        backbone=dict(type='mmlk.RepNeXt', arch=TINY, out_indices=(0, 1, 2, 3)),
        neck=dict(type='FPN', in_channels=TINY_CHANNELS, out_channels=32, num_outs=4),
        decode_head=dict(type='FPNHead', in_channels=[32] * 4, in_index=[0, 1, 2, 3], feature_strides=[4, 8, 16, 32],
                         channels=32, dropout_ratio=0.1, num_classes=4, norm_cfg=norm, align_corners=False,
                         loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)))
    assert type(model.backbone) is RepNeXt
    losses, preds = train_and_predict(model, seg_data(4), lr=1e-3)
    assert 'decode.loss_ce' in losses and all(torch.isfinite(v).all() for v in losses.values())
    assert preds[0].pred_sem_seg.data.shape == (1, 64, 64)


def test_mmpretrain_image_classifier_reproduces_two_head_classifier():
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS as CLS_MODELS
    from mmpretrain.structures import DataSample
    init_default_scope('mmpretrain')
    model = CLS_MODELS.build(dict(
        type='ImageClassifier',
        data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=5, mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], to_rgb=True),
        backbone=dict(type='mmlk.RepNeXt', arch='m0', out_indices=(3, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='mmlk.RepNeXtClsHead', num_classes=5, in_channels=320, cal_acc=True)))
    assert type(model.backbone) is RepNeXt and type(model.head) is RepNeXtClsHead
    keys = set(model.state_dict())
    assert {'head.head.norm.weight', 'head.head.linear.weight', 'head.head_dist.linear.bias',
            'backbone.stem.stem.0.conv.weight'} <= keys
    data = dict(inputs=ranged_images(2, 32),
                data_samples=[DataSample().set_gt_label(1), DataSample().set_gt_label(3)])
    losses, preds = train_and_predict(model, data, lr=1e-3)
    assert torch.isfinite(losses['loss']) and 'accuracy_top-1' in losses
    with torch.no_grad():
        # eval output = mean of the two heads, as upstream
        x = model.data_preprocessor(data)['inputs']
        pooled = model.extract_feat(x)
        mean = (model.head.head(pooled[-1]) + model.head.head_dist(pooled[-1])) / 2
    assert torch.allclose(torch.stack([p.pred_score for p in preds]), mean.softmax(1), atol=1e-6)
    # merging the whole classifier keeps its predictions
    randomise_bn(model)
    model.eval()
    with torch.no_grad():
        ref = model(x, mode='tensor')
        model.backbone.switch_to_deploy()
        model.head.switch_to_deploy()
        assert rel_err(model(x, mode='tensor'), ref) <= 1e-5
    assert {'head.weight', 'head.bias'} <= set(model.state_dict())


# --------------------------------------------------------------------------------------- timm
def test_timm_create_model():
    timm = pytest.importorskip('timm')
    assert {f'repnext_m{i}' for i in range(6)} <= set(timm.list_models('repnext*'))
    model = timm.create_model('repnext_m0', num_classes=10).eval()
    assert isinstance(model, TimmRepNeXt)
    backbone_keys = set(RepNeXt('m0').state_dict())
    keys = set(model.state_dict())
    assert backbone_keys <= keys and all(k.startswith('head.head') for k in keys - backbone_keys)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    model.set_grad_checkpointing(True)
    assert all(m.with_cp for m in model.modules() if isinstance(m, (MetaNeXtBlock, Downsample)))
    from timm.models import group_parameters
    groups = group_parameters(model, model.group_matcher())
    assert len(groups) > sum(DEPTHS['m0'])  # stem, every block and downsample, head
    model.reset_classifier(0)
    assert model.forward_head(torch.randn(1, 320, 2, 2)).shape == (1, 320)
    assert model.pretrained_cfg['first_conv'] == 'stem.stem.0.conv'


# ------------------------------------------------------------------ arch validation worded like RepLKNet's (issue #11)
@pytest.mark.parametrize('kwargs,match', [
    (dict(arch=dict(embed_dims=[16, 32], depths=[1, 1], mlp_ratio=0.01)), 'hidden width of 0'),
    (dict(arch=dict(embed_dims=[0, 0], depths=[1, 1])), 'positive int divisible by 4'),
    (dict(arch=dict(embed_dims=[16, 32], depths=[1, 1], mlp_ratio='2')), 'positive number'),
])
def test_bad_arguments_named_like_replknet(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RepNeXt(**{'arch': TINY, 'lk_impl': 'torch', **kwargs})
