"""RepNeXt as released beyond M0-M5: the single-branch "E" variants, the whole-model single-branch deploy
form, and the StarNet-recipe weights in timm's train-script format.

Published numbers come from the suous/RepNeXt README (StarNet-recipe table: M0E 2.5M / 0.5G, M1E 5.3M /
1.0G, M2E 7.0M / 1.3G), its ``tools/compact.py`` (fused parameters: M0 2.328M / M0E 2.541M on ImageNet,
2.039M / 2.252M on CIFAR-100) and its CIFAR-100 training log (``n_parameters`` of the training-form M0E
with 100 classes: 2,298,620).
"""
import argparse

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.flop_counter import FlopCounterMode

import mmlk  # noqa: F401  (registers the classes and the timm names)
from mmlk.models.repnext.model import ChunkConv, RepNeXt, SingleBranchChunkConv, SingleBranchCopyConv
from mmlk.models.repnext.timm import TimmRepNeXt
from mmlk.ops import LargeKernelDWConv2d

from _helpers import REPNEXT_TINY as TINY
from _helpers import merged_outputs, randomise_bn, rel_err

TINY_E = dict(TINY, token_mixer='single')  # the "E" form
TINY_CHUNK = dict(TINY, token_mixer='chunk')  # upstream README's plain ChunkConv


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------ the "E" variants: sizes
def test_e_variants_parameter_counts_match_published():
    with torch.device('meta'):
        # training form: upstream's CIFAR-100 logs (n_parameters, 100 classes)
        assert count(TimmRepNeXt('m0', num_classes=100)) == 2_138_680
        assert count(TimmRepNeXt('m0e', num_classes=100)) == 2_298_620
        # tools/compact.py: merged, with the block norms gone (utils.replace_batchnorm) = mmlk's default merge
        for (arch, classes), millions in {('m0', 1000): 2.328, ('m0e', 1000): 2.541, ('m0', 100): 2.039,
                                          ('m0e', 100): 2.252}.items():
            assert round(count(TimmRepNeXt(arch, num_classes=classes, deploy=True)) / 1e6, 3) == millions
        # README StarNet-recipe table (upstream's fused layout, block norms kept), 0.1M precision
        for arch, millions in (('m0', 2.3), ('m0e', 2.5), ('m1', 4.8), ('m1e', 5.3), ('m2', 6.5), ('m2e', 7.0)):
            model = TimmRepNeXt(arch, num_classes=1000, deploy=True, fold_block_norm=False)
            assert round(count(model) / 1e6, 1) == millions, arch
        # the single-branch deploy form of a multi-branch model has exactly the E variant's structure
        assert count(TimmRepNeXt('m1', num_classes=1000, deploy=True, single_branch=True)) == count(
            TimmRepNeXt('m1e', num_classes=1000, deploy=True))



def _macs(model: nn.Module) -> float:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, 224, 224))
    return counter.get_total_flops() / 2 / 1e9  # multiply-accumulates


@pytest.mark.parametrize('arch,published', [('m0e', 0.5), ('m1e', 1.0), ('m2e', 1.3)])
def test_e_variants_macs_match_published(arch, published):
    """GMACs at 224 px of the single-branch deploy form (plain torch convs, so every MAC is counted)."""
    model = TimmRepNeXt(arch, num_classes=1000, deploy=True, single_branch=True, lk_impl='torch').eval()
    assert round(_macs(model), 1) == published


# ------------------------------------------------------------------------------ E: layout and merging
def test_e_variant_layout_and_merge():
    model = RepNeXt('m0e')
    keys = model.state_dict()
    assert keys['stages.0.blocks.0.token_mixer.conv.weight'].shape == (40, 1, 11, 11)
    assert keys['stages.1.downsample.token_mixer.conv.weight'].shape == (80, 1, 7, 7)  # [conv_s, conv_m]
    assert 'stages.0.blocks.0.token_mixer.edge_taps' not in keys  # a plain 11 x 11 has no border term
    assert not any('conv_3_3' in k or 'conv_l' in k for k in keys)
    assert isinstance(model.stages[0].blocks[0].token_mixer.conv, LargeKernelDWConv2d)
    assert RepNeXt._parse_arch('M1E') == dict(embed_dims=[48, 96, 192, 384], depths=[3, 3, 15, 2], mlp_ratio=2,
                                             token_mixer='single')
    with pytest.raises(ValueError, match='token_mixer'):
        RepNeXt(dict(TINY, token_mixer='plain'))
    # README ChunkConv form: plain convs per chunk
    chunk = RepNeXt(TINY_CHUNK).state_dict()
    assert chunk['stages.0.blocks.0.token_mixer.conv_l.weight'].shape == (4, 1, 11, 11)
    assert chunk['stages.1.downsample.token_mixer.conv_s.weight'].shape == (16, 1, 3, 3)


@pytest.mark.parametrize('arch', [TINY_E, TINY_CHUNK])
def test_e_and_chunk_forms_merge_exactly(arch):
    torch.manual_seed(2)
    model = TimmRepNeXt(arch, num_classes=7)
    randomise_bn(model, conv_bias=True)
    ref, out = merged_outputs(model, torch.randn(2, 3, 40, 36))
    assert rel_err(out, ref) <= 1e-5
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())
    deployed = TimmRepNeXt(arch, num_classes=7, deploy=True)
    deployed.load_state_dict(model.state_dict(), strict=True)


@pytest.mark.parametrize('arch', [TINY, TINY_CHUNK])
@pytest.mark.parametrize('fold', [False, True])
def test_single_branch_deploy_equals_training_form(arch, fold):
    torch.manual_seed(3)
    model = TimmRepNeXt(arch, num_classes=7, fold_block_norm=fold)
    randomise_bn(model, conv_bias=True)
    model.eval()
    # 40 x 36 has interior rows; at 12 x 12 the last stages are all border (conv_l's inner bias matters)
    xs = [torch.randn(2, 3, 40, 36), torch.randn(1, 3, 12, 12)]
    with torch.no_grad():
        refs = [model(x) for x in xs]
        model.switch_to_deploy(single_branch=True)
        outs = [model(x) for x in xs]
    for out, ref in zip(outs, refs):
        assert rel_err(out, ref) <= 1e-5
    mixers = [m for m in model.modules() if isinstance(m, (SingleBranchChunkConv, SingleBranchCopyConv))]
    assert len(mixers) == sum(arch['depths']) + len(arch['depths']) - 1
    assert not any(isinstance(m, ChunkConv) for m in model.modules())
    for m in mixers:
        if isinstance(m, SingleBranchChunkConv):
            assert isinstance(m.conv, LargeKernelDWConv2d) and m.conv.kernel_size == (11, 11)
            assert (m.edge_taps is None) == (arch.get('token_mixer') == 'chunk')
    assert model.build_kwargs['single_branch'] is True


def test_single_branch_after_plain_merge_and_direct_build_and_loader(tmp_path):
    from mmlk.models.weights import load_pretrained
    torch.manual_seed(4)
    model = TimmRepNeXt(TINY, num_classes=5)
    randomise_bn(model, conv_bias=True)
    model.eval()
    released = tmp_path / 'tiny.pth'
    torch.save({'model': model.state_dict()}, released)
    x = torch.randn(1, 3, 32, 28)
    with torch.no_grad():
        ref = model(x)
        model.switch_to_deploy()  # multi-branch merge first ...
        model.switch_to_deploy(single_branch=True)  # ... then the single-branch fold
        assert rel_err(model(x), ref) <= 1e-5
        model.switch_to_deploy(single_branch=False)  # no way back: a no-op
        assert isinstance(model.stages[0].blocks[0].token_mixer, SingleBranchChunkConv)
        # deploy=True, single_branch=True builds the same structure (e.g. to load converted files)
        direct = TimmRepNeXt(TINY, num_classes=5, deploy=True, single_branch=True).eval()
        direct.load_state_dict(model.state_dict(), strict=True)
        assert torch.equal(direct(x), model(x))
        # the training-form release merges on the fly into a single-branch deploy model
        loaded = TimmRepNeXt(TINY, num_classes=5, deploy=True, single_branch=True).eval()
        load_pretrained(loaded, str(released))
        assert rel_err(loaded(x), ref) <= 1e-5


def test_e_variants_in_timm():
    timm = pytest.importorskip('timm')
    assert {'repnext_m0e', 'repnext_m1e', 'repnext_m2e'} <= set(timm.list_models('repnext*'))
    from timm.models import get_pretrained_cfg  # tags without a timm URL: weights come via checkpoints.yaml
    for i in range(3):
        for tag in ('starnet_in1k', 'starnet_dist_in1k'):
            assert get_pretrained_cfg(f'repnext_m{i}.{tag}').crop_pct == 0.9
    model = timm.create_model('repnext_m0e', num_classes=3)
    assert model.arch['token_mixer'] == 'single' and count(model) == count(TimmRepNeXt('m0e', num_classes=3))
    assert timm.create_model('repnext_m1.starnet_in1k').pretrained_cfg['crop_pct'] == 0.9
    with pytest.raises(ValueError, match='no weights'):
        timm.create_model('repnext_m0e', pretrained=True)
    with pytest.raises(RuntimeError, match='starnet_in1k'):  # StarNet-recipe weights exist for M0-M2 only
        timm.create_model('repnext_m3.starnet_in1k', pretrained=True)


# ------------------------------------------------------------------------------ timm train-script weights
def _timm_train_file(path, state, ema_state=None) -> None:
    obj = {'epoch': 299, 'arch': 'repnext_m0', 'state_dict': state, 'optimizer': {'state': {}, 'param_groups': []},
           'version': 2, 'args': argparse.Namespace(model='repnext_m0', model_ema=ema_state is not None),
           'metric': 73.8}
    if ema_state is not None:
        obj['state_dict_ema'] = ema_state
    torch.save(obj, path)


def test_timm_train_script_checkpoint_loads_model_or_ema_weights(tmp_path):
    from mmlk.checkpoint import CheckpointError
    from mmlk.models.weights import load_pretrained
    from mmlk.checkpoint.containers import is_timm_train_checkpoint
    from mmlk.checkpoint.reader import read_checkpoint
    torch.manual_seed(5)
    src, src_ema = TimmRepNeXt(TINY, num_classes=10), TimmRepNeXt(TINY, num_classes=10)
    randomise_bn(src, 1, conv_bias=True)
    randomise_bn(src_ema, 2, conv_bias=True)
    only_model = tmp_path / 'repnext_tiny_sz224_4xbs512_ep300.pth.tar'
    _timm_train_file(only_model, src.state_dict())
    both = tmp_path / 'with_ema.pth.tar'
    _timm_train_file(both, src.state_dict(), {f'module.{k}': v for k, v in src_ema.state_dict().items()})
    assert is_timm_train_checkpoint(read_checkpoint(str(both))[0])  # weights_only read (args Namespace allowed)

    dst = TimmRepNeXt(TINY, num_classes=10)
    report = load_pretrained(dst, str(only_model))
    assert report['format'] == 'timm-train' and report['weights'] == 'state_dict'
    assert not report['missing'] and not report['unexpected']
    assert all(torch.equal(a, b) for a, b in zip(dst.state_dict().values(), src.state_dict().values()))
    report = load_pretrained(dst, str(both), ema=True)
    assert report['weights'] == 'state_dict_ema'
    assert all(torch.equal(a, b) for a, b in zip(dst.state_dict().values(), src_ema.state_dict().values()))
    with pytest.raises(CheckpointError, match='no EMA weights'):
        load_pretrained(dst, str(only_model), ema=True)
    # a backbone takes the backbone part, a single-branch deploy model merges on the fly
    backbone = RepNeXt(TINY, out_indices=(-1, ))
    assert load_pretrained(backbone, str(only_model))['dropped_head']
    merged = TimmRepNeXt(TINY, num_classes=10, deploy=True, single_branch=True).eval()
    load_pretrained(merged, str(only_model))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert rel_err(merged(x), src.eval()(x)) <= 1e-5
