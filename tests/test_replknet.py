"""RepLKNet backbone: official layout, merge equivalence, training behaviour, host libraries, export."""
import copy
import os
from typing import Dict, List, Optional, Tuple

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

import mmlk  # noqa: F401  (registers mmlk classes and timm names)
from mmlk.models.weights.keys import check_state_dict_fits, describe_arch
from mmlk.models.replknet.model import ConvFFN, RepLKBlock, RepLKNet
from mmlk.ops import LargeKernelDWConv2d

from _helpers import REPLKNET_TINY as TINY
from _helpers import REPLKNET_TINY_31 as TINY_31
from _helpers import REPLKNET_TINY_SMALLK as TINY_SMALLK
from _helpers import REPLKNET_TINY_XL as TINY_XL
from _helpers import (build_mask_detector, det_data, merged_outputs, randomise_bn, ranged_images, rel_err,
                      train_and_predict)

BN_FIELDS = ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')


# The expected key layout is written from shared/docs/REFERENCE.md section 1 (the released checkpoints),
# independently of mmlk's modules, so a naming slip in the backbone cannot hide behind itself.
def official_keys(channels: List[int], layers: List[int], kernels: List[int],
                  small_kernel: Optional[int], dw_ratio: float, ffn_ratio: float,
                  num_classes: int = 0, intermediate_norm: bool = False,
                  merged: bool = False) -> Dict[str, Tuple[int, ...]]:
    """Key -> shape of an official RepLKNet state dict, from the documented layout."""
    keys: Dict[str, Tuple[int, ...]] = {}

    def bn(prefix: str, c: int) -> None:
        for f in BN_FIELDS:
            keys[f'{prefix}.{f}'] = () if f == 'num_batches_tracked' else (c, )

    def conv_bn(prefix: str, shape: Tuple[int, ...]) -> None:
        keys[f'{prefix}.conv.weight'] = shape
        bn(f'{prefix}.bn', shape[0])

    c0 = channels[0]
    conv_bn('stem.0', (c0, 3, 3, 3))
    conv_bn('stem.1', (c0, 1, 3, 3))
    conv_bn('stem.2', (c0, c0, 1, 1))
    conv_bn('stem.3', (c0, 1, 3, 3))
    for i, (c, n, k) in enumerate(zip(channels, layers, kernels)):
        dw = int(c * dw_ratio)
        hid = int(c * ffn_ratio)
        for j in range(n):
            lk = f'stages.{i}.blocks.{2 * j}'
            bn(f'{lk}.prelkb_bn', c)
            conv_bn(f'{lk}.pw1', (dw, c, 1, 1))
            conv_bn(f'{lk}.pw2', (c, dw, 1, 1))
            if merged:
                keys[f'{lk}.large_kernel.lkb_reparam.weight'] = (dw, 1, k, k)
                keys[f'{lk}.large_kernel.lkb_reparam.bias'] = (dw, )
            else:
                conv_bn(f'{lk}.large_kernel.lkb_origin', (dw, 1, k, k))
                if small_kernel is not None:
                    conv_bn(f'{lk}.large_kernel.small_conv', (dw, 1, small_kernel, small_kernel))
            ffn = f'stages.{i}.blocks.{2 * j + 1}'
            bn(f'{ffn}.preffn_bn', c)
            conv_bn(f'{ffn}.pw1', (hid, c, 1, 1))
            conv_bn(f'{ffn}.pw2', (c, hid, 1, 1))
        if intermediate_norm:
            bn(f'stages.{i}.norm', c)
        if i < 3:
            conv_bn(f'transitions.{i}.0', (channels[i + 1], c, 1, 1))
            conv_bn(f'transitions.{i}.1', (channels[i + 1], 1, 3, 3))
    if num_classes:
        bn('norm', channels[-1])
        keys['head.weight'] = (num_classes, channels[-1])
        keys['head.bias'] = (num_classes, )
    return keys


def keys_of_arch(arch: dict, **kwargs) -> Dict[str, Tuple[int, ...]]:
    return official_keys(arch['channels'], arch['layers'], arch['large_kernel_sizes'],
                         arch['small_kernel'], arch['dw_ratio'], arch['ffn_ratio'], **kwargs)


OFFICIAL = {
    '31B': dict(large_kernel_sizes=[31, 29, 27, 13], layers=[2, 2, 18, 2],
                channels=[128, 256, 512, 1024], small_kernel=5, dw_ratio=1, ffn_ratio=4),
    '31L': dict(large_kernel_sizes=[31, 29, 27, 13], layers=[2, 2, 18, 2],
                channels=[192, 384, 768, 1536], small_kernel=5, dw_ratio=1, ffn_ratio=4),
    'XL': dict(large_kernel_sizes=[27, 27, 27, 13], layers=[2, 2, 18, 2],
               channels=[256, 512, 1024, 2048], small_kernel=None, dw_ratio=1.5, ffn_ratio=4),
}


def _meta(**kwargs) -> RepLKNet:
    """Build on the meta device: shapes and keys without allocating (full-size variants)."""
    with torch.device('meta'):
        return RepLKNet(**kwargs)


def _shapes(model: nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _seeded(seed: int = 0, **kwargs) -> RepLKNet:
    torch.manual_seed(seed)
    return RepLKNet(**kwargs)


# ----------------------------------------------------------------------------- official layout
@pytest.mark.parametrize('arch,params,entries', [('31B', 79_864_168, 1171),
                                                 ('31L', 172_671_016, 1171),
                                                 ('XL', 335_435_752, 1027)])
def test_param_and_entry_counts(arch, params, entries):
    model = _meta(arch=arch, num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == params
    assert len(model.state_dict()) == entries


@pytest.mark.parametrize('arch', ['31B', '31L', 'XL'])
def test_official_key_layout(arch):
    expected = keys_of_arch(OFFICIAL[arch], num_classes=1000)
    assert _shapes(_meta(arch=arch, num_classes=1000)) == expected
    # Downstream forms: no classifier, intermediate norms (XL) and merged.
    assert _shapes(_meta(arch=arch, norm_intermediate_features=True)) == keys_of_arch(
        OFFICIAL[arch], intermediate_norm=True)
    assert _shapes(_meta(arch=arch, deploy=True, num_classes=1000)) == keys_of_arch(
        OFFICIAL[arch], num_classes=1000, merged=True)


def test_official_key_spot_checks_31b():
    shapes = _shapes(_meta(arch='31B', num_classes=1000))
    # Shapes quoted in REFERENCE.md.
    assert shapes['stem.0.conv.weight'] == (128, 3, 3, 3)
    assert shapes['stem.1.conv.weight'] == (128, 1, 3, 3)
    assert shapes['stem.2.conv.weight'] == (128, 128, 1, 1)
    assert shapes['stem.3.conv.weight'] == (128, 1, 3, 3)
    assert shapes['stages.0.blocks.0.large_kernel.lkb_origin.conv.weight'] == (128, 1, 31, 31)
    assert shapes['stages.0.blocks.0.large_kernel.small_conv.conv.weight'] == (128, 1, 5, 5)
    assert shapes['stages.0.blocks.1.pw1.conv.weight'] == (512, 128, 1, 1)
    assert shapes['stages.0.blocks.1.pw2.conv.weight'] == (128, 512, 1, 1)
    assert shapes['transitions.0.0.conv.weight'] == (256, 128, 1, 1)
    assert shapes['transitions.0.1.conv.weight'] == (256, 1, 3, 3)
    assert shapes['head.weight'] == (1000, 1024)
    for f in BN_FIELDS:
        assert f'stem.0.bn.{f}' in shapes and f'norm.{f}' in shapes
    assert 'stages.2.blocks.35.preffn_bn.weight' in shapes
    assert not any(k.startswith('stages.2.blocks.36.') for k in shapes)
    assert not any(k.startswith('transitions.3.') for k in shapes)
    assert not any('.norm.' in k for k in shapes if k.startswith('stages.'))


def test_merged_31b_has_931_entries_both_ways():
    built = _meta(arch='31B', num_classes=1000, deploy=True)
    assert len(built.state_dict()) == 931
    switched = _meta(arch='31B', num_classes=1000)
    switched.switch_to_deploy()
    assert _shapes(switched) == _shapes(built)
    # small_kernel_merged is the official alias of deploy.
    assert _shapes(_meta(arch='31B', num_classes=1000, small_kernel_merged=True)) == _shapes(built)


def test_21k_head_and_official_state_dict_loads_into_backbone():
    model = _meta(arch='31B', num_classes=21841)
    assert _shapes(model)['head.weight'] == (21841, 1024)
    # A small flat training-form state dict (the official format) loads with zero missing/unexpected.
    src = _seeded(1, arch=TINY, num_classes=7, out_indices=())
    dst = _seeded(2, arch=TINY, num_classes=7)
    result = dst.load_state_dict(src.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert check_state_dict_fits(dst, src.state_dict())['message'] == ''


def test_check_state_dict_fits_names_variant_and_keys():
    sd_31l = _meta(arch='31L', num_classes=1000).state_dict()
    with pytest.raises(ValueError) as err:
        check_state_dict_fits(_meta(arch='31B', num_classes=1000), sd_31l)
    msg = str(err.value)
    assert 'RepLKNet-31B' in msg and 'RepLKNet-31L' in msg and 'Shape differences' in msg
    assert 'stem.0.conv.weight' in msg

    merged = _meta(arch='XL', deploy=True).state_dict()
    with pytest.raises(ValueError) as err:
        check_state_dict_fits(_meta(arch='XL'), merged)
    msg = str(err.value)
    assert 'merged form' in msg and 'deploy=True' in msg
    assert 'Missing in the file' in msg and 'lkb_origin' in msg and 'lkb_reparam' in msg

    report = check_state_dict_fits(_meta(arch='31B'), _meta(arch='XL').state_dict(),
                                   raise_error=False)
    assert report['checkpoint']['arch_name'] == 'XL' and report['missing'] and report['mismatched']
    assert not report['unexpected'] and 'small_conv' in report['missing'][0]

    prefixed = {'backbone.' + k: v for k, v in _meta(arch='31B').state_dict().items()}
    with pytest.raises(ValueError, match="starts with 'backbone.'"):
        check_state_dict_fits(_meta(arch='31B'), prefixed)


@pytest.mark.parametrize('arch', [TINY, TINY_XL, TINY_SMALLK])
def test_describe_recovers_custom_arch(arch):
    info = describe_arch(RepLKNet(arch=arch, num_classes=5).state_dict())
    assert info['arch'] == arch and info['form'] == 'train' and info['num_classes'] == 5


# ----------------------------------------------------------------------------- arguments
@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='31X'), "unknown RepLKNet arch '31X'"),
    (dict(arch={**TINY, 'layers': [1, 1, 1]}), "'layers' must be 4 positive ints"),
    (dict(arch={k: v for k, v in TINY.items() if k != 'ffn_ratio'}), r"missing \['ffn_ratio'\]"),
    (dict(arch={**TINY, 'kernel': 3}), r"unknown \['kernel'\]"),
    (dict(arch={**TINY, 'large_kernel_sizes': [13, 12, 9, 7]}), 'must be odd'),
    (dict(arch={**TINY, 'small_kernel': 9}), "'small_kernel' must be None or an odd int"),
    (dict(arch={**TINY, 'dw_ratio': 0}), "'dw_ratio' must be a positive number"),
    (dict(arch=TINY, deploy=True, small_kernel_merged=False), 'alias of deploy'),
    (dict(arch=TINY, num_classes=-1), 'num_classes'),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RepLKNet(**kwargs)


def test_norm_cfg_lk_impl_and_drop_path_take_effect():
    gn = RepLKNet(arch=TINY, norm_cfg=dict(type='GN', num_groups=4), norm_intermediate_features=True,
                  num_classes=3)
    assert not any(isinstance(m, _BatchNorm) for m in gn.modules())
    n_gn = sum(isinstance(m, nn.GroupNorm) for m in gn.modules())
    # stem 4 + transitions 6 + per pair (prelkb, pw1, lkb, small, pw2, preffn, pw1, pw2) + 4 + norm
    assert n_gn == 4 + 6 + 8 * sum(TINY['layers']) + 4 + 1
    out = gn(torch.randn(2, 3, 32, 32))
    assert all(torch.isfinite(o).all() for o in out)

    model = RepLKNet(arch=TINY, lk_impl='torch', drop_path_rate=0.3)
    lk = [m for m in model.modules() if isinstance(m, LargeKernelDWConv2d)]
    assert len(lk) == sum(TINY['layers']) and all(m.impl == 'torch' for m in lk)
    assert sorted(m.kernel_size[0] for m in lk) == [7, 9, 9, 11, 13]
    rates = torch.linspace(0, 0.3, sum(TINY['layers'])).tolist()
    got = [blk.drop_path.drop_prob if hasattr(blk.drop_path, 'drop_prob') else 0.0
           for st in model.stages for blk in st.blocks]
    assert got == pytest.approx([r for r in rates for _ in range(2)])
    # Below the threshold the large kernel stays a plain conv.
    assert not any(isinstance(m, LargeKernelDWConv2d) for m in RepLKNet(arch=TINY_SMALLK).modules())


def test_classifier_output_follows_the_maps():
    # The mm backbone itself carries the official classifier; the logits come last.
    clf = RepLKNet(arch=TINY, out_indices=(2, ), num_classes=10).eval()
    feats, logits = clf(torch.randn(2, 3, 64, 64))
    assert feats.shape == (2, 32, 4, 4) and logits.shape == (2, 10)


# ----------------------------------------------------------------------------- merging
@pytest.mark.parametrize('arch', [TINY, TINY_XL, TINY_SMALLK], ids=['smallk', 'xl', 'convpath'])
@pytest.mark.parametrize('inter', [False, True], ids=['plain', 'internorm'])
@pytest.mark.parametrize('fuse_bn', [False, True], ids=['merge', 'fuse'])
def test_merge_equivalence(arch, inter, fuse_bn):
    model = _seeded(0, arch=arch, norm_intermediate_features=inter, num_classes=10)
    randomise_bn(model, seed=3)
    x = torch.randn(2, 3, 64, 48)
    ref, out = merged_outputs(model, x, fuse_bn=fuse_bn)
    assert len(out) == len(ref) == 5
    for a, b in zip(out, ref):
        assert rel_err(a, b) <= 1e-5
    assert not any('lkb_origin' in k or 'small_conv' in k for k in model.state_dict())
    if fuse_bn:
        remaining = [n for n, m in model.named_modules() if isinstance(m, _BatchNorm)]
        # Only the intermediate output norms have no conv to fold into.
        assert remaining == ([f'stages.{i}.norm' for i in range(4)] if inter else [])
    # The merged weights load into a model built merged and give the same result.
    built = RepLKNet(arch=arch, norm_intermediate_features=inter, num_classes=10, deploy=True,
                     fuse_bn=fuse_bn).eval()
    assert check_state_dict_fits(built, model.state_dict())['message'] == ''
    built.load_state_dict(model.state_dict())
    with torch.no_grad():
        for a, b in zip(built(x), out):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_switch_to_deploy_idempotent_and_keeps_real_padding():
    model = _seeded(0, arch=TINY, num_classes=4)
    randomise_bn(model, 1)
    model.eval()
    model.switch_to_deploy()
    sd1 = copy.deepcopy(model.state_dict())
    model.switch_to_deploy()
    for blk in model.stages[0].blocks:
        blk.switch_to_deploy()
    sd2 = model.state_dict()
    assert sd1.keys() == sd2.keys() and all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    x = torch.randn(1, 16, 12, 12)
    for name, m in model.named_modules():
        if name.endswith('lkb_reparam'):
            k = m.kernel_size[0]
            assert m.padding == (k // 2, k // 2) and m.bias is not None
            x = torch.randn(1, m.in_channels, 12, 12)
            # The module's own attributes describe the conv it computes (upstream bug #48).
            ref = F.conv2d(x, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)
            torch.testing.assert_close(m(x), ref)
    # fuse_bn after a plain merge is also idempotent, and the backbone remembers its form.
    model.switch_to_deploy(fuse_bn=True)
    model.switch_to_deploy(fuse_bn=True)
    assert model.build_kwargs['deploy'] and model.build_kwargs['fuse_bn']
    twin = type(model)(**{**model.build_kwargs})
    twin.load_state_dict(model.state_dict())


def test_block_level_merge():
    blk = RepLKBlock(8, 12, 13, 5, norm_cfg=dict(type='BN')).eval()
    ffn = ConvFFN(8, 16).eval()
    randomise_bn(blk, 4)
    randomise_bn(ffn, 5)
    x = torch.randn(2, 8, 10, 10)
    with torch.no_grad():
        ref = ffn(blk(x))
        blk.switch_to_deploy(fuse_bn=True)
        ffn.switch_to_deploy(fuse_bn=True)
        assert rel_err(ffn(blk(x)), ref) <= 1e-5
    assert not any(isinstance(m, _BatchNorm) for m in list(blk.modules()) + list(ffn.modules()))


# ----------------------------------------------------------------------------- inputs, compile
def test_inputs_smaller_than_kernel_merge():
    # 64x64 under 31/29/27/13 kernels: stage 4 is 2x2; merged form still equivalent.
    big = _seeded(0, arch=TINY_31)
    randomise_bn(big, 2)
    ref, out = merged_outputs(big, torch.randn(2, 3, 64, 64))
    assert ref[3].shape == (2, 16, 2, 2)
    for a, b in zip(out, ref):
        assert torch.isfinite(a).all() and rel_err(a, b) <= 1e-5


# Inductor's cold C++ compile of even this tiny graph takes 1-2 minutes on the shared 2-core machine,
# so CI compiles through dynamo + AOTAutograd ('aot_eager': graph capture, functionalisation and the
# large-kernel op's fake implementation); MMLK_TEST_INDUCTOR=1 adds the inductor code path.
@pytest.mark.slow
@pytest.mark.parametrize('backend', [
    'aot_eager',
    pytest.param('inductor', marks=pytest.mark.skipif(
        os.environ.get('MMLK_TEST_INDUCTOR') != '1', reason='slow on CPU; set MMLK_TEST_INDUCTOR=1')),
])
def test_torch_compile_matches_eager(backend):
    torch._dynamo.reset()
    model = _seeded(0, arch=TINY_XL, num_classes=4).eval()
    randomise_bn(model, 7)
    x = torch.randn(2, 3, 64, 64)
    compiled = torch.compile(model, backend=backend)
    with torch.no_grad():
        ref = model(x)
        out = compiled(x)
    for a, b in zip(out, ref):
        assert rel_err(a, b) <= 1e-4


# ----------------------------------------------------------------------------- timm
def test_timm_create_model():
    timm = pytest.importorskip('timm')
    with torch.device('meta'):  # full-size variants: parameters and keys need no data
        for name, arch, params in [('replknet_31b', '31B', 79_864_168),
                                   ('replknet_31l', '31L', 172_671_016),
                                   ('replknet_xl', 'XL', 335_435_752)]:
            model = timm.create_model(name)
            assert sum(p.numel() for p in model.parameters()) == params
            assert _shapes(model) == keys_of_arch(OFFICIAL[arch], num_classes=1000)
            assert model.pretrained_cfg['mean'] == ((0.5, ) * 3 if arch == 'XL' else
                                                    (0.485, 0.456, 0.406))
            pooled = timm.create_model(name, num_classes=0)
            assert 'head.weight' not in pooled.state_dict()
            assert 'norm.weight' in pooled.state_dict()
        assert timm.create_model('replknet_31l.in22k').head.weight.shape == (21841, 1536)
    # Small width: timm's feature getter returns the backbone's stage maps, the logits equal the mm
    # classifier form's on the same weights, and num_classes=0 gives the pooled normalised features.
    from mmlk.models.replknet.timm import TimmRepLKNet
    from timm.models._features import FeatureGetterNet
    tm = TimmRepLKNet(arch=TINY_XL, num_classes=5, norm_intermediate_features=True).eval()
    randomise_bn(tm, 12)
    mm = RepLKNet(arch=TINY_XL, num_classes=5, norm_intermediate_features=True).eval()
    mm.load_state_dict(tm.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = mm(x)
        maps = FeatureGetterNet(copy.deepcopy(tm), out_indices=(0, 1, 2, 3))(x)
        logits = tm(x)
        tm.reset_classifier(0)
        pooled = tm(x)
    for a, b in zip(maps, ref[:4]):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(logits, ref[4])
    torch.testing.assert_close(mm.head(pooled), ref[4])


def test_timm_pretrained_goes_through_mmlk_checkpoints(tmp_path, monkeypatch):
    timm = pytest.importorskip('timm')
    # Offline with an empty cache: the failure must name the mmlk checkpoint, never fall back to
    # random weights silently (timm's own behaviour for a cfg without url).
    monkeypatch.setenv('MMLK_OFFLINE', '1')
    monkeypatch.setenv('MMLK_CACHE_DIR', str(tmp_path))
    with torch.device('meta'), pytest.raises(Exception, match='replknet-31b_in21k-pre_in1k-384'):
        timm.create_model('replknet_31b.in22k_ft_in1k_384', pretrained=True)


# ----------------------------------------------------------------------------- host libraries
def _backbone(**kwargs) -> dict:
    return dict(type='mmlk.RepLKNet', arch=TINY, drop_path_rate=0.1, **kwargs)


def test_mmdet_cascade_mask_rcnn_train_and_predict():
    model = build_mask_detector('cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py',
                                _backbone(out_indices=(0, 1, 2, 3)), in_channels=[16, 32, 32, 64])
    assert type(model.backbone) is RepLKNet
    losses, preds = train_and_predict(model, det_data())
    assert 's0.loss_mask' in losses and all(torch.isfinite(v).all() for v in losses.values())
    assert len(preds) == 2 and 'bboxes' in preds[0].pred_instances
    assert 'masks' in preds[0].pred_instances


def test_mmpretrain_image_classifier_train_and_predict():
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    from mmpretrain.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = dict(
        type='ImageClassifier',
        data_preprocessor=dict(type='ClsDataPreprocessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], to_rgb=True, num_classes=10),
        backbone=_backbone(num_classes=10, out_indices=()),
        head=dict(type='ClsHead', loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg)
    assert type(model.backbone) is RepLKNet
    # The official classifier keys sit under backbone.: norm.*, head.*.
    keys = set(model.state_dict())
    assert {'backbone.norm.weight', 'backbone.head.weight', 'backbone.head.bias'} <= keys
    data = dict(inputs=ranged_images(2, 64),
                data_samples=[DataSample().set_gt_label(3), DataSample().set_gt_label(7)])
    losses, preds = train_and_predict(model, data)
    assert torch.isfinite(losses['loss'])
    assert preds[0].pred_score.shape == (10, )
    assert torch.allclose(preds[0].pred_score.sum(), torch.tensor(1.0), atol=1e-5)


# ----------------------------------------------------------------------------- weights and tools
def test_reparameterize_tool(tmp_path):
    from tools.model_converters.reparameterize import main
    src = _seeded(4, arch=TINY_XL, num_classes=6)
    randomise_bn(src, 9)
    src_path = tmp_path / 'train.pth'
    torch.save({'state_dict': src.state_dict(), 'meta': {'epoch': 3}}, src_path)
    src_bytes = src_path.read_bytes()
    dst_path = tmp_path / 'deploy.pth'
    main([str(src_path), str(dst_path), '--fuse-bn'])
    assert src_path.read_bytes() == src_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ['deploy.pth', 'train.pth']
    saved = torch.load(dst_path, map_location='cpu', weights_only=True)
    merged = RepLKNet(arch=TINY_XL, num_classes=6, deploy=True, fuse_bn=True).eval()
    merged.load_state_dict(saved['state_dict'])
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(merged(x), src.eval()(x)):
            assert rel_err(a, b) <= 1e-5
    with pytest.raises(SystemExit):
        main([str(src_path), str(src_path)])
    with pytest.raises(SystemExit):
        main([str(src_path), str(dst_path)])  # exists: needs --force


def test_reparameterize_tool_downstream_and_config(tmp_path):
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    from tools.model_converters.reparameterize import main

    # A downstream-style file: backbone.* is merged, every other key is copied unchanged.
    backbone = _seeded(5, arch=TINY)
    randomise_bn(backbone, 10)
    sd = {'backbone.' + k: v for k, v in backbone.state_dict().items()}
    sd['decode_head.conv_seg.weight'] = torch.randn(5, 16, 1, 1)
    torch.save({'state_dict': sd, 'meta': {}, 'optimizer': {}}, tmp_path / 'seg.pth')
    main([str(tmp_path / 'seg.pth'), str(tmp_path / 'seg_deploy.pth')])
    out = torch.load(tmp_path / 'seg_deploy.pth', map_location='cpu', weights_only=True)
    assert 'optimizer' not in out and 'meta' in out
    assert torch.equal(out['state_dict']['decode_head.conv_seg.weight'],
                       sd['decode_head.conv_seg.weight'])
    merged = RepLKNet(arch=TINY, deploy=True)
    merged.load_state_dict({k[len('backbone.'):]: v for k, v in out['state_dict'].items()
                            if k.startswith('backbone.')})

    # Any mm model through its config (here an mmpretrain classifier, default scope mmpretrain).
    cfg_text = (
        "default_scope = 'mmpretrain'\n"
        "custom_imports = dict(imports=['mmlk'], allow_failed_imports=False)\n"
        f"model = dict(type='ImageClassifier', backbone=dict(type='mmlk.RepLKNet', arch={TINY!r}, "
        "num_classes=4, out_indices=()), neck=None, head=dict(type='ClsHead'))\n")
    cfg_path = tmp_path / 'cls.py'
    cfg_path.write_text(cfg_text)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        clf = MODELS.build(dict(type='ImageClassifier', backbone=_backbone(num_classes=4,
                                                                          out_indices=()),
                                neck=None, head=dict(type='ClsHead')))
    randomise_bn(clf, 11)
    torch.save(clf.state_dict(), tmp_path / 'cls.pth')
    main([str(tmp_path / 'cls.pth'), str(tmp_path / 'cls_deploy.pth'), '--config', str(cfg_path),
          '--fuse-bn'])
    flat = torch.load(tmp_path / 'cls_deploy.pth', map_location='cpu', weights_only=True)
    deployed = RepLKNet(arch=TINY, num_classes=4, out_indices=(), deploy=True, fuse_bn=True).eval()
    deployed.load_state_dict({k[len('backbone.'):]: v for k, v in flat.items()})
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(deployed(x)[0], clf.backbone.eval()(x)[0]) <= 1e-5


def test_reparameterize_tool_repnext(tmp_path):
    from mmlk.registry import MODELS

    from tools.model_converters.reparameterize import main
    cls = MODELS.get('RepNeXt')
    if cls is None:
        pytest.skip('RepNeXt is not registered')
    torch.manual_seed(0)
    model = cls(arch='m0')
    randomise_bn(model, 13)
    torch.save(model.state_dict(), tmp_path / 'rn.pth')
    # keys of no family: the tool names the families to choose from
    torch.save({'conv.weight': torch.zeros(4, 3, 3, 3)}, tmp_path / 'other.pth')
    with pytest.raises(ValueError, match='--model .*repnext'):
        main([str(tmp_path / 'other.pth'), str(tmp_path / 'x.pth')])
    # family and variant read from the keys (every family describes its own state dicts) = the explicit form
    main([str(tmp_path / 'rn.pth'), str(tmp_path / 'auto.pth')])
    main([str(tmp_path / 'rn.pth'), str(tmp_path / 'rn_deploy.pth'), '--model', 'repnext',
          '--arch', 'm0'])
    auto = torch.load(tmp_path / 'auto.pth', weights_only=True)
    explicit = torch.load(tmp_path / 'rn_deploy.pth', weights_only=True)
    assert auto.keys() == explicit.keys() and all(torch.equal(auto[k], explicit[k]) for k in auto)
    merged = cls(arch='m0', deploy=True).eval()
    merged.load_state_dict(explicit)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(merged(x), model.eval()(x)):
            assert rel_err(a, b) <= 1e-5


def test_timm_fused_replknet_without_a_head_keeps_its_final_norm():
    """TimmRepLKNet(num_classes=0, deploy=True, fuse_bn=True): no Linear to absorb the final BN, so the fused
    form keeps it (this constructor path used to raise NameError: build_norm_layer was never imported)."""
    pytest.importorskip('timm')
    from mmlk.models.replknet.timm import TimmRepLKNet
    model = TimmRepLKNet(arch=dict(TINY), num_classes=0, deploy=True, fuse_bn=True).eval()
    assert isinstance(model.norm, torch.nn.BatchNorm2d)
    out = model(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, TINY['channels'][-1])
