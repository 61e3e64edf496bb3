"""tools/model_converters: upstream downstream / classification files -> checkpoints the shipped configs load.

The converted files are checked the way tools/test.py uses them: mmengine's ``load_checkpoint`` with
``strict=True`` into a model built from an mmlk config, under torch's ``weights_only`` loading.
"""
import glob
import os
import os.path as osp
import textwrap

import pytest
import torch

import _checkpoint_fixtures as F
from mmlk.checkpoint import CheckpointError, sha256sum
from mmlk.models.weights.convert import build_model_from_config, convert_classification, convert_downstream

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# The demo config (an ordinary mmseg 1.x UperNet config with a CPU-sized RepLKNet), found by its stem so a
# schedule change in its name does not break these tests.
DEMOS = sorted(glob.glob(osp.join(REPO, 'configs', 'demo', 'upernet_replknet-mini_*.py')))
assert len(DEMOS) == 1, DEMOS
DEMO = DEMOS[0]


def _config(tmp_path, name, base, body):
    path = tmp_path / name
    path.write_text(f"_base_ = [{base!r}]\n" + textwrap.dedent(body))
    return str(path)


def _strict_load(config, ckpt):
    from mmengine.runner import load_checkpoint
    model = build_model_from_config(config)
    load_checkpoint(model, ckpt, map_location='cpu', strict=True)  # what tools/test.py does
    return model


def _upstream_upernet(tmp_path):
    """An mmseg 0.x UperNet checkpoint for the demo config's arch: official backbone keys + head keys."""
    cfg = _config(tmp_path, 'seg.py', DEMO, "model = dict(backbone=dict(norm_cfg=dict(type='BN')), "
                  "decode_head=dict(norm_cfg=dict(type='BN')), auxiliary_head=dict(norm_cfg=dict(type='BN')))\n")
    model = build_model_from_config(cfg)
    arch = model.backbone.arch
    backbone = F.replknet_official(tuple(arch['channels']), tuple(arch['layers']), tuple(arch['large_kernel_sizes']),
                                   arch['small_kernel'], arch['dw_ratio'], arch['ffn_ratio'], num_classes=0)
    ckpt = F.to_mmseg0x(backbone, num_classes=6)
    # UperNet / FCN head parameter names are the same in mmseg 0.x and 1.x: take them from the model.
    heads = {k: torch.randn(v.shape) if v.is_floating_point() else v.clone()
             for k, v in model.state_dict().items() if k.startswith(('decode_head.', 'auxiliary_head.'))}
    ckpt['state_dict'] = {**{k: v for k, v in ckpt['state_dict'].items() if k.startswith('backbone.')}, **heads}
    src = str(tmp_path / 'upstream_upernet.pth')
    torch.save(ckpt, src)
    return cfg, src, ckpt


def test_downstream_without_config_is_weights_and_dataset_meta(tmp_path):
    src = str(tmp_path / 'up.pth')
    ckpt = F.to_mmseg0x(F.replknet_official(num_classes=0))
    torch.save(ckpt, src)
    before = sha256sum(src)
    dst = str(tmp_path / 'out' / 'converted.pth')
    convert_downstream(src, dst)
    out = torch.load(dst, weights_only=True)
    assert set(out) == {'meta', 'state_dict'}  # no optimizer state
    assert out['meta']['dataset_meta']['classes'] == ckpt['meta']['CLASSES']
    assert out['meta']['dataset_meta']['palette'][3] == [3, 3, 3]
    assert sorted(out['state_dict']) == sorted(ckpt['state_dict'])
    assert all(torch.equal(out['state_dict'][k], v) for k, v in ckpt['state_dict'].items())
    assert sha256sum(src) == before and sorted(os.listdir(tmp_path / 'out')) == ['converted.pth']
    with pytest.raises(CheckpointError, match='over the input'):
        convert_downstream(src, src)
    with pytest.raises(CheckpointError, match='exists'):
        convert_downstream(src, dst)
    with pytest.raises(CheckpointError, match='not a downstream'):
        torch.save(F.replknet_official(), str(tmp_path / 'cls.pth'))
        convert_downstream(str(tmp_path / 'cls.pth'), str(tmp_path / 'x.pth'))


def test_downstream_with_config_loads_strictly_into_the_config(tmp_path):
    cfg, src, ckpt = _upstream_upernet(tmp_path)
    dst = str(tmp_path / 'converted.pth')
    convert_downstream(src, dst, config=cfg)
    model = _strict_load(cfg, dst)
    sd = model.state_dict()
    for k, v in ckpt['state_dict'].items():
        assert torch.equal(sd[k], v), k
    # A deploy-form config gets merged weights, computed on the fly from the training-form file.
    deploy_cfg = _config(tmp_path, 'seg_deploy.py', cfg, 'model = dict(backbone=dict(deploy=True))\n')
    dst2 = str(tmp_path / 'converted_deploy.pth')
    convert_downstream(src, dst2, config=deploy_cfg)
    deployed = _strict_load(deploy_cfg, dst2).eval()
    model.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(deployed.backbone(x), model.backbone(x)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_downstream_wrong_variant_for_config(tmp_path):
    bad = F.to_mmseg0x(F.replknet_official(num_classes=0))  # the tiny fixture arch, not the demo's
    src = str(tmp_path / 'bad.pth')
    torch.save(bad, src)
    cfg = _config(tmp_path, 'seg2.py', DEMO, "model = dict(backbone=dict(norm_cfg=dict(type='BN')))\n")
    expected = r'channels \(16, 32, 32, 64\).*but the model is RepLKNet \(channels \(32, 64, 128, 256\)'
    with pytest.raises(CheckpointError, match=expected):
        convert_downstream(src, str(tmp_path / 'o.pth'), config=cfg)
    assert not osp.exists(tmp_path / 'o.pth')


@pytest.mark.parametrize('deploy', [False, True])
def test_classification_replknet_to_mmpretrain(tmp_path, deploy):
    sd = F.replknet_official(num_classes=10)
    src = str(tmp_path / 'RepLKNet-tiny.pth')
    torch.save({'model': sd}, src)
    base = osp.join(REPO, 'configs', '_base_', 'models', 'replknet-31b_in1k.py')
    cfg = _config(tmp_path, 'cls.py', base, f"""
        default_scope = 'mmpretrain'
        custom_imports = dict(imports=['mmlk'], allow_failed_imports=False)
        model = dict(backbone=dict(arch={dict(F.TINY_LK_ARCH, _delete_=True)!r}, num_classes=10, deploy={deploy}))
        """)
    dst = str(tmp_path / 'cls_mmpretrain.pth')
    if deploy:
        convert_classification(src, dst, config=cfg)
    else:
        convert_classification(src, dst)  # default layout = mmlk's classification configs
    model = _strict_load(cfg, dst).eval()
    ref = build_model_from_config(_config(tmp_path, 'ref.py', cfg, 'model = dict(backbone=dict(deploy=False))\n'))
    ref.backbone.load_state_dict(sd)
    ref.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(x)[-1], ref.backbone(x)[-1], rtol=1e-4, atol=1e-4)


def test_classification_repnext_to_mmpretrain(tmp_path):
    sd = F.repnext_official(num_classes=10)
    src = str(tmp_path / 'repnext_tiny_distill_300e.pth')
    torch.save(F.deit_style(sd), src)
    base = osp.join(REPO, 'configs', '_base_', 'models', 'repnext-m3_in1k.py')
    cfg = _config(tmp_path, 'cls.py', base, f"""
        default_scope = 'mmpretrain'
        custom_imports = dict(imports=['mmlk'], allow_failed_imports=False)
        model = dict(backbone=dict(arch={dict(F.TINY_NX_ARCH, _delete_=True)!r}),
                     head=dict(in_channels=128, num_classes=10))
        """)
    dst = str(tmp_path / 'nx_mmpretrain.pth')
    convert_classification(src, dst)
    model = _strict_load(cfg, dst)
    sd_model = model.state_dict()
    assert torch.equal(sd_model['head.head_dist.linear.weight'], sd['head.head_dist.linear.weight'])
    assert torch.equal(sd_model['backbone.stem.stem.0.conv.weight'], sd['stem.stem.0.conv.weight'])
    # mmpretrain's own RepLKNet layout exists only for RepLKNet.
    with pytest.raises(CheckpointError, match='only for RepLKNet'):
        convert_classification(src, str(tmp_path / 'x.pth'), layout='mmpretrain')


def test_classification_to_mmpretrains_own_replknet(tmp_path):
    """layout='mmpretrain' fits mmpretrain's own RepLKNet classifier (backbone.stages.3.norm, head.fc)."""
    from mmengine.registry import DefaultScope
    from mmengine.runner import load_checkpoint
    from mmpretrain.registry import MODELS
    sd = F.replknet_official(num_classes=10, ffn_ratio=4)  # mmpretrain's arch dicts fix the FFN ratio at 4
    src, dst = str(tmp_path / 'lk.pth'), str(tmp_path / 'lk_mmpretrain.pth')
    torch.save(sd, src)
    convert_classification(src, dst, layout='mmpretrain')
    arch = dict(F.TINY_LK_ARCH, ffn_ratio=4)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(dict(type='ImageClassifier', backbone=dict(type='RepLKNet', arch=arch, out_indices=(3, )),
                                  neck=dict(type='GlobalAveragePooling'),
                                  head=dict(type='LinearClsHead', num_classes=10, in_channels=64)))
    assert type(model.backbone).__module__.startswith('mmpretrain.')
    load_checkpoint(model, dst, map_location='cpu', strict=True)
    assert torch.equal(model.state_dict()['backbone.stages.3.norm.running_var'], sd['norm.running_var'])
    assert torch.equal(model.state_dict()['head.fc.weight'], sd['head.weight'])
