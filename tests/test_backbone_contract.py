"""The contract every mmlk backbone family keeps, checked on a tiny variant of each (RepLKNet, RepNeXt, UniRepLKNet).

Arguments and their errors, features, freezing, checkpointing, merging, inputs, export, registries, loading
and timm. Where the families differ today, the difference is a field of ``Family`` with a comment, so a test
states what holds for both and the family-specific part stays visible.
"""
import copy
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Tuple

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

import mmlk  # noqa: F401  (registers mmlk classes and timm names)
from mmlk.models.replknet.model import RepLKNet
from mmlk.models.repnext.model import RepNeXt
from mmlk.models.repnext.timm import TimmRepNeXt
from mmlk.models.unireplknet.model import UniRepLKNet

from _helpers import (REPLKNET_TINY, REPLKNET_TINY_XL, REPNEXT_TINY, UNIREPLKNET_TINY, build_segmentor, expected_hw,
                      merged_outputs, randomise_bn, rel_err, seg_data, train_and_predict)


@dataclass
class Family:
    name: str
    cls: type
    tiny: dict
    channels: List[int]
    # the classifier form: the mm backbone with num_classes for RepLKNet, the timm class for RepNeXt
    classifier: Callable[..., nn.Module]
    # extra arguments for the tests that use the backbone "as a classifier" where the family has one
    extra: Dict
    # what frozen_stages=2 freezes
    frozen_prefixes: Tuple[str, ...]
    # a running mean and a weight of an unfrozen stage, both changed by one training step
    trained_keys: Tuple[str, str]
    # a parameter of the last stage (changed by a host train step)
    last_stage_param: str
    # how a custom checkpoint of the wide variant is described in a load error
    wide: Dict
    wide_description: str
    # a named variant (load error says '<name> (training form')
    named: str
    named_description: str
    timm_name: str
    timm_channels: List[int]
    onnx_case: Callable[[], Tuple[nn.Module, torch.Tensor, int]] = field(repr=False, default=None)

    def build(self, **kwargs) -> nn.Module:
        return self.cls(arch=kwargs.pop('arch', self.tiny), **kwargs)

    def seeded(self, seed: int = 0, **kwargs) -> nn.Module:
        torch.manual_seed(seed)
        return self.build(**kwargs)


def _replknet_onnx_case():
    torch.manual_seed(0)
    model = RepLKNet(arch=REPLKNET_TINY_XL, num_classes=4, out_indices=(1, 3)).eval()
    randomise_bn(model, 6)
    model.switch_to_deploy(fuse_bn=True)
    return model, torch.randn(1, 3, 64, 64), 3  # two maps and the logits


def _repnext_onnx_case():
    model = RepNeXt(REPNEXT_TINY, out_indices=(1, 3))
    randomise_bn(model)
    model.eval().switch_to_deploy()
    return model, torch.randn(1, 3, 48, 48), 2


REPLKNET = Family(
    name='RepLKNet', cls=RepLKNet, tiny=REPLKNET_TINY, channels=[16, 32, 32, 64],
    classifier=lambda **kw: RepLKNet(arch=REPLKNET_TINY, **kw), extra=dict(num_classes=3),
    frozen_prefixes=('stem.', 'stages.0.', 'stages.1.', 'transitions.0.'),
    trained_keys=('transitions.1.0.bn.running_mean', 'stages.2.blocks.0.pw1.conv.weight'),
    last_stage_param='stages.3.blocks.0.pw1.conv.weight',
    wide=dict(REPLKNET_TINY, channels=[32, 64, 64, 128]), wide_description='channels (32, 64, 64, 128)',
    named='31B', named_description='RepLKNet-31B', timm_name='replknet_31b',
    timm_channels=[128, 256, 512, 1024], onnx_case=_replknet_onnx_case)
REPNEXT = Family(
    name='RepNeXt', cls=RepNeXt, tiny=REPNEXT_TINY, channels=[16, 32, 64, 128],
    classifier=lambda **kw: TimmRepNeXt(REPNEXT_TINY, **kw), extra=dict(),
    frozen_prefixes=('stem.', 'stages.0.', 'stages.1.'),
    trained_keys=('stages.2.blocks.0.norm.running_mean', 'stages.2.blocks.0.channel_mixer.0.conv.weight'),
    last_stage_param='stages.3.blocks.0.channel_mixer.0.conv.weight',
    wide=dict(embed_dims=[32, 64, 128, 256], depths=[1, 1, 2, 1]), wide_description='channels (32, 64, 128, 256)',
    named='m3', named_description='RepNeXt-M3', timm_name='repnext_m0', timm_channels=[40, 80, 160, 320],
    onnx_case=_repnext_onnx_case)


def _unireplknet_onnx_case():
    torch.manual_seed(0)
    model = UniRepLKNet(arch=UNIREPLKNET_TINY, num_classes=4, out_indices=(1, 3)).eval()
    randomise_bn(model, 5)
    model.switch_to_deploy()
    return model, torch.randn(1, 3, 64, 64), 3


UNIREPLKNET = Family(
    name='UniRepLKNet', cls=UniRepLKNet, tiny=UNIREPLKNET_TINY, channels=[16, 32, 48, 64],
    classifier=lambda **kw: UniRepLKNet(arch=UNIREPLKNET_TINY, **kw), extra=dict(num_classes=3),
    frozen_prefixes=('downsample_layers.0.', 'downsample_layers.1.', 'stages.0.', 'stages.1.'),
    # (the layer scale starts at 1e-6: the weights behind it barely move in one step, the scale itself does)
    trained_keys=('stages.2.0.norm.running_mean', 'stages.2.0.gamma'),
    last_stage_param='stages.3.0.gamma',
    wide=dict(UNIREPLKNET_TINY, dims=[32, 64, 96, 128]), wide_description='dims (32, 64, 96, 128)',
    named='a', named_description='UniRepLKNet-A', timm_name='unireplknet_a', timm_channels=[40, 80, 160, 320],
    onnx_case=_unireplknet_onnx_case)
FAMILIES = [REPLKNET, REPNEXT, UNIREPLKNET]


@pytest.fixture(params=FAMILIES, ids=lambda f: f.name)
def family(request) -> Family:
    return request.param


# ----------------------------------------------------------------------------- arguments
@pytest.mark.parametrize('kwargs,match', [
    (dict(out_indices=(4, )), 'out_indices'),
    (dict(out_indices=()), 'out_indices is empty'),
    (dict(out_indices=(0, 0)), 'duplicates'),
    (dict(out_indices=(0, -4)), 'duplicates'),
    (dict(out_indices=(1.0, )), 'stage indices in \\[0, 3\\]'),
    (dict(frozen_stages=5), 'frozen_stages'),
    (dict(drop_path_rate=1.0), 'drop_path_rate'),
])
def test_bad_arguments_raise_value_error(family, kwargs, match):
    with pytest.raises(ValueError, match=match):
        family.build(**kwargs)


def test_sync_bn_builds_and_group_norm_refuses_to_merge(family):
    sync = family.build(norm_cfg=dict(type='SyncBN'))
    norms = [m for m in sync.modules() if isinstance(m, _BatchNorm)]
    assert norms and all(isinstance(m, nn.SyncBatchNorm) for m in norms)
    gn = family.build(norm_cfg=dict(type='GN', num_groups=4))
    with pytest.raises(ValueError, match='GroupNorm') as err:
        gn.switch_to_deploy()
    assert 'BatchNorm' in str(err.value)


# ----------------------------------------------------------------------------- features
@pytest.mark.parametrize('out_indices,expected', [((-1, 1), (1, 3)), ((1, -1), (1, 3)), ((-1, 0), (0, 3)),
                                                  (2, (2, ))])
def test_out_indices_sorted_and_out_channels_match_the_maps(family, out_indices, expected):
    model = family.build(out_indices=out_indices).eval()
    assert model.out_indices == expected
    assert model.out_channels == [family.channels[i] for i in expected]
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(2, family.channels[i], *expected_hw(64, 64, i)) for i in expected]


# ----------------------------------------------------------------------------- training behaviour
def _train_step(model: nn.Module, x: torch.Tensor) -> None:
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    opt.zero_grad()
    sum(o.square().mean() for o in model(x)).backward()
    opt.step()


def test_frozen_stages_freeze_parameters_and_norms(family):
    model = family.seeded(0, frozen_stages=2, norm_eval=False).train()
    frozen = family.frozen_prefixes
    for name, p in model.named_parameters():
        assert p.requires_grad == (not name.startswith(frozen)), name
    for name, m in model.named_modules():
        if isinstance(m, _BatchNorm):
            assert m.training == (not name.startswith(frozen)), name
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _train_step(model, torch.randn(2, 3, 64, 64))
    model.train()  # re-applies freezing
    after = model.state_dict()
    assert not [k for k in before if k.startswith(frozen) and not torch.equal(before[k], after[k])]
    for key in family.trained_keys:
        assert not torch.equal(before[key], after[key]), key
    # Merging keeps frozen parts frozen and the others trainable.
    model.switch_to_deploy()
    for name, p in model.named_parameters():
        assert p.requires_grad == (not name.startswith(frozen)), name


def test_norm_eval_keeps_bn_in_eval(family):
    model = family.build(norm_eval=True).train()
    assert all(not m.training for m in model.modules() if isinstance(m, _BatchNorm))
    assert all(stage.training for stage in model.stages)


@pytest.mark.parametrize('switch', ['constructor', 'attribute'])
def test_with_cp_gradients_and_running_stats(family, switch):
    base = family.seeded(0, **family.extra).train()
    if switch == 'constructor':
        cp_model = family.build(with_cp=True, **family.extra).train()
        cp_model.load_state_dict(base.state_dict())
    else:
        cp_model = copy.deepcopy(base)
        cp_model.with_cp = True
    blocks_cp = [m.with_cp for m in cp_model.modules() if m is not cp_model and hasattr(m, 'with_cp')]
    assert blocks_cp and all(blocks_cp)
    x = torch.randn(2, 3, 64, 64)
    losses = []
    for m in (base, cp_model):
        loss = sum(o.square().mean() for o in m(x))
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    for (name, p), q in zip(base.named_parameters(), cp_model.parameters()):
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)
    # Recomputation must not update BN statistics a second time (num_batches_tracked would count twice).
    for (name, a), b in zip(base.named_buffers(), cp_model.buffers()):
        torch.testing.assert_close(a, b, msg=name)


# ----------------------------------------------------------------------------- merging
def test_switch_to_deploy_idempotent_and_equivalent(family):
    torch.manual_seed(0)
    model = family.classifier(num_classes=5)
    randomise_bn(model)
    ref, out = merged_outputs(model, torch.randn(2, 3, 40, 36))
    for a, b in zip(out if isinstance(out, tuple) else [out], ref if isinstance(ref, tuple) else [ref]):
        assert rel_err(a, b) <= 1e-5
    first = {k: v.clone() for k, v in model.state_dict().items()}
    modules = list(model.modules())
    model.switch_to_deploy()
    for m in model.modules():
        if hasattr(m, 'switch_to_deploy'):
            m.switch_to_deploy()  # block / head level too
    assert list(model.modules()) == modules
    assert first.keys() == model.state_dict().keys()
    assert all(torch.equal(first[k], v) for k, v in model.state_dict().items())
    assert model.build_kwargs['deploy'] is True
    merged_twin = type(model)(**model.build_kwargs)
    merged_twin.load_state_dict(model.state_dict())
    twin = type(model)(**{**model.build_kwargs, 'deploy': False})  # the loader's training-form twin
    assert twin.num_classes == 5
    if family is REPNEXT:
        assert isinstance(twin.head.head, nn.Module)


@pytest.mark.parametrize('impl', ['torch', 'fft'])
def test_merged_convs_keep_the_large_kernel_route_the_model_was_built_with(family, impl):
    """Every large-kernel conv a merge builds reads its route from the conv it replaces (``conv_like``)."""
    from mmlk.models.utils import reparameterize
    from mmlk.ops import LargeKernelDWConv2d
    model = family.seeded(lk_impl=impl).eval()
    options = {'fuse_bn': True} if family is REPLKNET else {}
    reparameterize(model, **options)
    large = [m for m in model.modules() if isinstance(m, LargeKernelDWConv2d)]
    assert large and all(m.impl == impl for m in large), sorted({m.impl for m in large})


# ----------------------------------------------------------------------------- inputs
@pytest.mark.parametrize('deploy', [False, True])
@pytest.mark.parametrize('size', [(225, 223), (33, 47), (5, 7), (1, 1)])
def test_odd_and_tiny_inputs(family, size, deploy):
    model = family.seeded(0, deploy=deploy, **family.extra).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, *size))
    for i in range(4):
        assert outs[i].shape == (2, family.channels[i], *expected_hw(*size, i))
    assert all(torch.isfinite(o).all() for o in outs)


def test_batch_one_in_train_mode(family):
    model = family.seeded(0).train()
    outs = model(torch.randn(1, 3, 64, 64))  # 2x2 at stage 4: BN has 4 values per channel
    assert all(torch.isfinite(o).all() for o in outs)
    with pytest.raises(ValueError, match='Expected more than 1 value per channel'):
        model(torch.randn(1, 3, 32, 32))  # 1x1 at stage 4: BN statistics undefined


def test_train_mode_odd_input_backward(family):
    model = family.seeded(0).train()
    outs = model(torch.randn(2, 3, 23, 17))
    sum(o.mean() for o in outs).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize('deploy', [False, True])
@pytest.mark.parametrize('size', [(64, 64), (24, 20)])
def test_channels_last_and_bf16_autocast(family, size, deploy):
    model = family.seeded(4, deploy=deploy, **family.extra)
    randomise_bn(model)
    model.eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        ref = model(x)
        cl_input = model(x.to(memory_format=torch.channels_last))
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = model(x)
        cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    for a, b, c, r in zip(cl_input, cl, low, ref):
        assert a.shape == r.shape and rel_err(a, r) <= 1e-5
        assert b.shape == r.shape and rel_err(b, r) <= 1e-5
        assert c.shape == r.shape and torch.isfinite(c).all()
        assert rel_err(c, r) < 0.1  # bf16 keeps ~3 significant digits


# ----------------------------------------------------------------------------- export
@pytest.mark.slow
def test_onnx_export_of_merged_model(family, tmp_path):
    onnx = pytest.importorskip('onnx')
    from onnx.reference import ReferenceEvaluator
    model, x, n_out = family.onnx_case()
    path = str(tmp_path / f'{family.name.lower()}.onnx')
    torch.onnx.export(model, (x, ), path, dynamo=True, input_names=['x'])
    onnx.checker.check_model(path)
    got = ReferenceEvaluator(path).run(None, {'x': x.numpy()})
    with torch.no_grad():
        ref = model(x)
    assert len(got) == len(ref) == n_out
    for a, b in zip(got, ref):
        assert rel_err(torch.from_numpy(np.asarray(a)), b) <= 1e-4


# ----------------------------------------------------------------------------- registries
def test_registry_builds_from_every_scope(family):
    from mmdet.registry import MODELS as DET
    from mmengine.registry import MODELS as ROOT
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS as CLS
    from mmseg.registry import MODELS as SEG
    cfg = dict(type=f'mmlk.{family.name}', arch=family.tiny, drop_path_rate=0.1)
    for scope, reg in (('mmseg', SEG), ('mmdet', DET), ('mmpretrain', CLS)):
        with DefaultScope.overwrite_default_scope(scope):
            assert type(reg.build(cfg)) is family.cls
            assert type(ROOT.build(cfg)) is family.cls
    assert SEG.get(family.name) is family.cls and DET.get(family.name) is family.cls
    with DefaultScope.overwrite_default_scope('mmseg'):
        assert type(ROOT.build(dict(cfg, type=family.name))) is family.cls  # plain alias
    if family is REPLKNET:
        import mmpretrain.models  # noqa: F401
        assert CLS.get('RepLKNet') is not RepLKNet  # mmpretrain's own class is not shadowed


def test_mmseg_upernet_train_and_predict(family):
    c = family.channels
    norm = dict(type='BN', requires_grad=True)
    model = build_segmentor(
        backbone=dict(type=f'mmlk.{family.name}', arch=family.tiny, drop_path_rate=0.1, out_indices=(0, 1, 2, 3)),
        decode_head=dict(type='UPerHead', in_channels=c, in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3, 6),
                         channels=16, dropout_ratio=0.1, num_classes=5, norm_cfg=norm, align_corners=False,
                         loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
        auxiliary_head=dict(type='FCNHead', in_channels=c[2], in_index=2, channels=8, num_convs=1,
                            concat_input=False, dropout_ratio=0.1, num_classes=5, norm_cfg=norm, align_corners=False,
                            loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)))
    assert type(model.backbone) is family.cls
    before = model.backbone.state_dict()[family.last_stage_param].clone()
    losses, preds = train_and_predict(model, seg_data(5))
    assert 'decode.loss_ce' in losses and all(torch.isfinite(v).all() for v in losses.values())
    assert not torch.equal(before, model.backbone.state_dict()[family.last_stage_param])
    assert preds[0].pred_sem_seg.data.shape == (1, 64, 64)


def test_reparameterize_merges_the_backbone_inside_a_host_model(family):
    """The one walker: a segmentor's backbone is merged in place (eval outputs unchanged), the heads are left
    alone, family options reach the backbone only, an option nobody takes is an error."""
    from mmlk.models.utils import reparameterize
    torch.manual_seed(0)
    model = build_segmentor(
        backbone=dict(type=f'mmlk.{family.name}', arch=family.tiny, out_indices=(3, )),
        decode_head=dict(type='FCNHead', in_channels=family.channels[3], in_index=0, channels=8, num_convs=1,
                         num_classes=3, norm_cfg=dict(type='BN')))
    randomise_bn(model.backbone)
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model._forward(x)
    # a family option where the family has one (UniRepLKNet's merge has no variants)
    options = {family.cls.deploy_options[0]: True} if family.cls.deploy_options else {}
    with pytest.raises(ValueError, match='no_such_option'):
        reparameterize(copy.deepcopy(model), no_such_option=True)
    assert reparameterize(model, **options) == ['backbone']
    assert model.backbone.build_kwargs['deploy'] and all(model.backbone.build_kwargs[k] for k in options)
    with torch.no_grad():
        assert rel_err(model._forward(x), ref) <= 1e-5
    merged_keys = list(model.state_dict())
    assert reparameterize(model) == ['backbone'] and list(model.state_dict()) == merged_keys  # idempotent


# ----------------------------------------------------------------------------- weights
@pytest.mark.parametrize('layout', ['model', 'state_dict_prefixed'])
def test_init_cfg_pretrained_loads_through_mmlk(family, layout, tmp_path):
    src = family.seeded(3, **family.extra)
    randomise_bn(src, 8)
    path = str(tmp_path / 'ckpt.pth')
    if layout == 'model':  # the official release layout
        torch.save({'model': src.state_dict()}, path)
        init_cfg = dict(type='Pretrained', checkpoint=path)
    else:  # a downstream mm checkpoint
        torch.save({'state_dict': {f'backbone.{k}': v for k, v in src.state_dict().items()}}, path)
        init_cfg = dict(type='Pretrained', checkpoint=path, prefix='backbone.')
    dst = family.build(init_cfg=init_cfg, **family.extra)
    dst.init_weights()
    assert dst.state_dict().keys() == src.state_dict().keys()
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    twin = type(dst)(**{**dst.build_kwargs, 'deploy': False, 'init_cfg': None})
    assert twin.state_dict().keys() == dst.state_dict().keys()


def test_load_state_dict_names_variant_and_form(family):
    small = family.build()
    with pytest.raises(RuntimeError) as exc:
        small.load_state_dict(family.build(arch=family.wide).state_dict())
    msg = str(exc.value)
    assert f'{family.name}(custom' in msg and family.wide_description in msg and 'Shape differences' in msg
    merged = family.build(deploy=True)
    with pytest.raises(RuntimeError) as exc:
        small.load_state_dict(merged.state_dict())
    msg = str(exc.value)
    assert 'training form' in msg and 'merged form' in msg and 'deploy=True' in msg
    with pytest.raises(RuntimeError, match='training form.*\n.*deploy=False') as exc:
        merged.load_state_dict(small.state_dict())
    assert 'merged form' in str(exc.value) and 'Not in the model' in str(exc.value)
    named = family.build(arch=family.named, out_indices=(3, ))
    with pytest.raises(RuntimeError, match=f'{family.named_description} \\(training form'):
        named.load_state_dict({'backbone.' + k: v for k, v in small.state_dict().items()})
    small.load_state_dict(family.build().state_dict())  # a fitting one still loads


# ----------------------------------------------------------------------------- timm
@pytest.mark.parametrize('out_indices', [None, (1, 2, 3)])
def test_timm_features_only(family, out_indices):
    timm = pytest.importorskip('timm')
    kwargs = {} if out_indices is None else dict(out_indices=out_indices)
    feat = timm.create_model(family.timm_name, features_only=True, **kwargs).eval()
    stages = (0, 1, 2, 3) if out_indices is None else out_indices
    assert feat.feature_info.channels() == [family.timm_channels[i] for i in stages]
    assert feat.feature_info.reduction() == [2 ** (i + 2) for i in stages]
    with torch.no_grad():
        maps = feat(torch.randn(1, 3, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(1, family.timm_channels[i], *expected_hw(64, 64, i))
                                              for i in stages]
    assert all(torch.isfinite(m).all() for m in maps)
