"""UniRepLKNet: official key layout, parity with a functional re-statement of the official network, merge,
published parameter counts, bad input, finite outputs where upstream had NaN, checkpoints and the host configs.

The reference here (:func:`reference_forward`) is the official computation written out with ``torch.nn.functional``
from the documented layout (REFERENCE.md section 6: the block order, GRN, SE, the Dilated Reparam Block branch
table, the stem, the norms): it reads only a state dict, so it checks mmlk's module wiring independently.
"""
import math
import re
from typing import Dict, List, Tuple

import pytest
import torch
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

import mmlk  # noqa: F401
from mmlk.models.weights import load_pretrained
from mmlk.checkpoint.errors import CheckpointError
from mmlk.models.unireplknet.model import DILATED_BRANCHES, UniRepLKNet

from _helpers import REPO, UNIREPLKNET_TINY, rel_err

VARIANTS = {  # depths, dims (REFERENCE section 6)
    'a': ((2, 2, 6, 2), (40, 80, 160, 320)), 'f': ((2, 2, 6, 2), (48, 96, 192, 384)),
    'p': ((2, 2, 6, 2), (64, 128, 256, 512)), 'n': ((2, 2, 8, 2), (80, 160, 320, 640)),
    't': ((3, 3, 18, 3), (80, 160, 320, 640)), 's': ((3, 3, 27, 3), (96, 192, 384, 768)),
    'b': ((3, 3, 27, 3), (128, 256, 512, 1024)), 'l': ((3, 3, 27, 3), (192, 384, 768, 1536)),
    'xl': ((3, 3, 27, 3), (256, 512, 1024, 2048)),
}
# The official classes' parameter counts in millions (1000 classes): training form and merged form.
PARAMS_TRAIN = dict(a=4.65, f=6.49, p=11.08, n=18.82, t=31.69, s=56.46, b=99.09, l=220.08, xl=388.69)
PARAMS_MERGED = dict(a=4.44, f=6.24, p=10.74, n=18.32, t=31.04, s=55.65, b=98.01, l=218.45, xl=386.53)


def official_kernels(depths) -> List[List[int]]:
    """The official default kernel tables, spelled out per depth (not computed by mmlk)."""
    d0, d1, d2, d3 = depths
    stage2 = {6: [13] * 6, 8: [13] * 8, 18: [13, 3] * 9, 27: [13, 3, 3] * 9}[d2]
    return [[3] * d0, [13] * d1, stage2, [13] * d3]


def official_layout(depths, dims, kernels, merged: bool = False, num_classes: int = 0,
                    out_norms=(0, 1, 2, 3)) -> Dict[str, Tuple[int, ...]]:
    """Key -> shape of an official UniRepLKNet state dict (downstream norm0..3 and / or classifier norm + head)."""
    keys: Dict[str, Tuple[int, ...]] = {}

    def bn(p: str, c: int) -> None:
        keys.update({f'{p}.weight': (c, ), f'{p}.bias': (c, ), f'{p}.running_mean': (c, ), f'{p}.running_var': (c, ),
                     f'{p}.num_batches_tracked': ()})

    def ln(p: str, c: int) -> None:
        keys.update({f'{p}.weight': (c, ), f'{p}.bias': (c, )})

    c0 = dims[0]
    keys.update({'downsample_layers.0.0.weight': (c0 // 2, 3, 3, 3), 'downsample_layers.0.0.bias': (c0 // 2, )})
    ln('downsample_layers.0.1', c0 // 2)
    keys.update({'downsample_layers.0.3.weight': (c0, c0 // 2, 3, 3), 'downsample_layers.0.3.bias': (c0, )})
    ln('downsample_layers.0.4', c0)
    for i in range(1, 4):
        keys.update({f'downsample_layers.{i}.0.weight': (dims[i], dims[i - 1], 3, 3),
                     f'downsample_layers.{i}.0.bias': (dims[i], )})
        ln(f'downsample_layers.{i}.1', dims[i])
    for i, (depth, c) in enumerate(zip(depths, dims)):
        for j in range(depth):
            p, k = f'stages.{i}.{j}', kernels[i][j]
            if k >= 7:
                keys[f'{p}.dwconv.lk_origin.weight'] = (c, 1, k, k)
                if merged:
                    keys[f'{p}.dwconv.lk_origin.bias'] = (c, )
                else:
                    bn(f'{p}.dwconv.origin_bn', c)
                    for bk, r in DILATED_BRANCHES[k]:
                        keys[f'{p}.dwconv.dil_conv_k{bk}_{r}.weight'] = (c, 1, bk, bk)
                        bn(f'{p}.dwconv.dil_bn_k{bk}_{r}', c)
            elif k > 0:
                keys[f'{p}.dwconv.weight'] = (c, 1, k, k)
                if merged:
                    keys[f'{p}.dwconv.bias'] = (c, )
            if k > 0 and not merged:
                bn(f'{p}.norm', c)
            keys.update({f'{p}.se.down.weight': (c // 4, c, 1, 1), f'{p}.se.down.bias': (c // 4, ),
                         f'{p}.se.up.weight': (c, c // 4, 1, 1), f'{p}.se.up.bias': (c, ),
                         f'{p}.pwconv1.1.weight': (4 * c, c), f'{p}.pwconv1.1.bias': (4 * c, ),
                         f'{p}.act.1.gamma': (1, 1, 1, 4 * c), f'{p}.pwconv2.0.weight': (c, 4 * c)})
            if merged:
                keys[f'{p}.pwconv2.0.bias'] = (c, )
            else:
                keys[f'{p}.act.1.beta'] = (1, 1, 1, 4 * c)
                bn(f'{p}.pwconv2.2', c)
                keys[f'{p}.gamma'] = (c, )
    for i in out_norms:
        ln(f'norm{i}', dims[i])
    if num_classes:
        ln('norm', dims[-1])
        keys.update({'head.weight': (num_classes, dims[-1]), 'head.bias': (num_classes, )})
    return keys


# ----------------------------------------------------------------------------- the reference network
def _bn(x, sd, p):
    return F.batch_norm(x, sd[f'{p}.running_mean'], sd[f'{p}.running_var'], sd[f'{p}.weight'], sd[f'{p}.bias'],
                        False, 0.0, 1e-5)


def _ln_channels(x, sd, p):
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    return sd[f'{p}.weight'][:, None, None] * (x - u) / torch.sqrt(s + 1e-6) + sd[f'{p}.bias'][:, None, None]


def _block(x, sd, p, k):
    c = x.shape[1]
    y = x
    if k >= 7:
        w = sd[f'{p}.dwconv.lk_origin.weight']
        y = _bn(F.conv2d(x, w, None, 1, k // 2, 1, c), sd, f'{p}.dwconv.origin_bn')
        for bk, r in DILATED_BRANCHES[k]:
            w = sd[f'{p}.dwconv.dil_conv_k{bk}_{r}.weight']
            y = y + _bn(F.conv2d(x, w, None, 1, (r * (bk - 1) + 1) // 2, r, c), sd, f'{p}.dwconv.dil_bn_k{bk}_{r}')
    elif k > 0:
        y = F.conv2d(x, sd[f'{p}.dwconv.weight'], None, 1, k // 2, 1, c)
    if k > 0:
        y = _bn(y, sd, f'{p}.norm')
    s = F.adaptive_avg_pool2d(y, 1)
    s = F.conv2d(F.relu(F.conv2d(s, sd[f'{p}.se.down.weight'], sd[f'{p}.se.down.bias'])),
                 sd[f'{p}.se.up.weight'], sd[f'{p}.se.up.bias'])
    y = y * torch.sigmoid(s)
    y = F.gelu(F.linear(y.permute(0, 2, 3, 1), sd[f'{p}.pwconv1.1.weight'], sd[f'{p}.pwconv1.1.bias']))
    g = torch.norm(y, p=2, dim=(1, 2), keepdim=True)
    n = g / (g.mean(dim=-1, keepdim=True) + 1e-6)
    y = (sd[f'{p}.act.1.gamma'] * n + 1) * y + sd[f'{p}.act.1.beta']
    y = F.linear(y, sd[f'{p}.pwconv2.0.weight']).permute(0, 3, 1, 2)
    y = _bn(y, sd, f'{p}.pwconv2.2')
    return x + sd[f'{p}.gamma'].view(1, -1, 1, 1) * y


def reference_forward(sd, x, depths, kernels, num_classes=0, out_norms=(0, 1, 2, 3)):
    """The official training-form network in eval mode, read from a state dict."""
    x = F.conv2d(x, sd['downsample_layers.0.0.weight'], sd['downsample_layers.0.0.bias'], 2, 1)
    x = F.gelu(_ln_channels(x, sd, 'downsample_layers.0.1'))
    x = _ln_channels(F.conv2d(x, sd['downsample_layers.0.3.weight'], sd['downsample_layers.0.3.bias'], 2, 1), sd,
                     'downsample_layers.0.4')
    outs = []
    for i in range(4):
        if i > 0:
            x = F.conv2d(x, sd[f'downsample_layers.{i}.0.weight'], sd[f'downsample_layers.{i}.0.bias'], 2, 1)
            x = _ln_channels(x, sd, f'downsample_layers.{i}.1')
        for j in range(depths[i]):
            x = _block(x, sd, f'stages.{i}.{j}', kernels[i][j])
        if i in out_norms:
            outs.append(_ln_channels(x, sd, f'norm{i}'))
    if num_classes:
        pooled = F.layer_norm(x.mean((2, 3)), (x.shape[1], ), sd['norm.weight'], sd['norm.bias'], 1e-6)
        outs.append(F.linear(pooled, sd['head.weight'], sd['head.bias']))
    return outs


def randomise_everything(model, seed=0):
    """BN statistics and affine parameters, layer scales, GRN gamma / beta and LayerNorms away from their init,
    so that every branch and every merged term matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
        for name, p in model.named_parameters():
            if name.endswith(('.gamma', '.beta')) or re.search(r'(^|\.)norm\d?\.(weight|bias)$', name):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5 + (1.0 if name.endswith('weight') else 0.0))


# ----------------------------------------------------------------------------- layout
@pytest.mark.parametrize('variant', list(VARIANTS))
def test_official_key_layout_every_variant(variant):
    depths, dims = VARIANTS[variant]
    kernels = official_kernels(depths)
    with torch.device('meta'):
        forms = {
            'downstream': (UniRepLKNet(variant), dict()),
            'classifier': (UniRepLKNet(variant, out_indices=(), num_classes=1000), dict(num_classes=1000, out_norms=())),
            'merged downstream': (UniRepLKNet(variant, deploy=True), dict(merged=True)),
            'merged classifier': (UniRepLKNet(variant, out_indices=(), num_classes=1000, deploy=True),
                                  dict(merged=True, num_classes=1000, out_norms=())),
        }
    for form, (model, kwargs) in forms.items():
        got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert got == official_layout(depths, dims, kernels, **kwargs), form


def test_key_counts_of_t_and_published_parameter_counts():
    with torch.device('meta'):
        assert len(UniRepLKNet('t').state_dict()) == 1120
        assert len(UniRepLKNet('t', deploy=True).state_dict()) == 325
        for v in VARIANTS:
            train = UniRepLKNet(v, out_indices=(), num_classes=1000)
            merged = UniRepLKNet(v, out_indices=(), num_classes=1000, deploy=True)
            assert round(sum(p.numel() for p in train.parameters()) / 1e6, 2) == PARAMS_TRAIN[v], v
            assert round(sum(p.numel() for p in merged.parameters()) / 1e6, 2) == PARAMS_MERGED[v], v


# ----------------------------------------------------------------------------- parity and merge
PARITY_CASES = {
    'A': ('a', VARIANTS['a'][0], official_kernels(VARIANTS['a'][0])),
    # every kernel size the official block takes: identity, plain 3 / 5, every Dilated Reparam table
    'all-kernels': (dict(depths=[2, 2, 5, 2], dims=[16, 32, 48, 64],
                         kernel_sizes=[[0, 3], [5, 7], [9, 11, 13, 15, 17], [13, 3]]),
                    (2, 2, 5, 2), [[0, 3], [5, 7], [9, 11, 13, 15, 17], [13, 3]]),
}


@pytest.mark.parametrize('case', list(PARITY_CASES))
def test_features_and_logits_equal_the_official_computation_and_the_merged_form(case):
    arch, depths, kernels = PARITY_CASES[case]
    torch.manual_seed(0)
    model = UniRepLKNet(arch, num_classes=10)
    randomise_everything(model)
    model.eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        outs = model(x)
        ref = reference_forward(dict(model.state_dict()), x, depths, kernels, num_classes=10)
        assert len(outs) == len(ref) == 5
        for a, b in zip(outs, ref):
            assert rel_err(a, b) <= 1e-4
        model.switch_to_deploy()
        merged = model(x)
    for a, b in zip(merged, ref):
        assert rel_err(a, b) <= 1e-4
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == official_layout(
        depths, [o.shape[1] for o in outs[:4]], kernels, merged=True, num_classes=10)
    # the merged state dict loads strictly into a model built merged
    built = UniRepLKNet(arch, num_classes=10, deploy=True)
    built.load_state_dict(model.state_dict())


def test_block_merge_is_exact_with_every_term():
    """One block, everything randomised: dilated branches, the BN after the dwconv, GRN's beta, pwconv2's BN,
    the layer scale; merged output equal within float rounding (the official check measured 6.4e-7)."""
    torch.manual_seed(1)
    model = UniRepLKNet(UNIREPLKNET_TINY, out_indices=(1, ))
    randomise_everything(model, seed=3)
    block = model.stages[1][0].eval()
    x = torch.randn(2, 32, 11, 9)
    with torch.no_grad():
        ref = block(x)
        block.switch_to_deploy()
        block.switch_to_deploy()  # idempotent
        assert rel_err(block(x), ref) <= 1e-5
    assert block.act[1].beta is None and block.gamma is None


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize('arch, match', [
    ('m', r"unknown UniRepLKNet arch 'm'; choose one of \['a', 'f', 'p', 'n', 't', 's', 'b', 'l', 'xl'\]"),
    (dict(depths=[1, 1, 1, 1], dims=[8, 16, 32, 64], kernel_sizes=[[3], [3], [3, 3], [3]]), 'one size per block'),
    (dict(depths=[1, 1, 1, 1], dims=[8, 16, 32, 64]), 'no default kernel sizes'),
    (dict(depths=[1, 1, 1, 1], dims=[8, 16, 32, 64], kernel_sizes=[[3], [3], [19], [3]]), r'must be in \[0, 3, 5'),
    (dict(depths=[1, 1, 1], dims=[8, 16, 32]), '4 positive ints'),
    (dict(depth=[1, 1, 1, 1], dims=[8, 16, 32, 64]), 'unknown'),
    (dict(depths=[2, 2, 6, 2], dims=[2, 16, 32, 64]), 'must be >= 4'),
])
def test_bad_arch_raises_value_error_naming_the_choices(arch, match):
    with pytest.raises(ValueError, match=match):
        UniRepLKNet(arch)


# ----------------------------------------------------------------------------- finite where upstream was not
@pytest.mark.parametrize('size', [(384, 128), (64, 64)])
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_finite_outputs_and_gradients_on_wide_and_small_inputs(size, dtype):
    """Upstream issue #14 (NaN on 384x128): training step and evaluation, fp32 and bf16 autocast."""
    torch.manual_seed(0)
    model = UniRepLKNet(UNIREPLKNET_TINY, num_classes=7).train()
    x = torch.randn(2, 3, *size)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=dtype is torch.bfloat16):
        outs = model(x)
        loss = sum(o.float().square().mean() for o in outs)
    loss.backward()
    assert all(torch.isfinite(o).all() for o in outs)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval().switch_to_deploy()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16, enabled=dtype is torch.bfloat16):
        assert all(torch.isfinite(o).all() for o in model(x))


# ----------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope='module')
def classifier_file(tmp_path_factory):
    """An official-layout classifier release (under 'model', as upstream saves) of a tiny arch."""
    torch.manual_seed(0)
    model = UniRepLKNet(UNIREPLKNET_TINY, out_indices=(), num_classes=10)
    randomise_everything(model)
    path = str(tmp_path_factory.mktemp('uni') / 'classifier.pth')
    torch.save({'model': model.state_dict()}, path)
    return path, model.state_dict()


def test_classifier_release_loads_into_classifier_and_downstream_backbone(classifier_file):
    path, sd = classifier_file
    cls = UniRepLKNet(UNIREPLKNET_TINY, out_indices=(), num_classes=10)
    report = load_pretrained(cls, path)
    assert report['format'] == 'unireplknet-official' and not report['missing']
    assert all(torch.equal(cls.state_dict()[k], v) for k, v in sd.items())
    # into a downstream backbone: the classifier is dropped, the output norms norm0..3 start fresh
    backbone = UniRepLKNet(UNIREPLKNET_TINY)
    report = load_pretrained(backbone, path)
    assert sorted(k for k in report['missing'] if not k.endswith('num_batches_tracked')) == sorted(
        f'norm{i}.{p}' for i in range(4) for p in ('weight', 'bias'))
    assert {'norm.weight', 'head.weight'} <= set(report['dropped'])
    # into a merged model: merged on the fly, equal outputs
    merged = UniRepLKNet(UNIREPLKNET_TINY, out_indices=(), num_classes=10, deploy=True).eval()
    load_pretrained(merged, path)
    cls.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(merged(x)[-1], cls(x)[-1]) <= 1e-5


def test_mm1x_downstream_checkpoint_loads_with_its_backbone_prefix(tmp_path):
    torch.manual_seed(0)
    src = UniRepLKNet(UNIREPLKNET_TINY)
    randomise_everything(src)
    path = str(tmp_path / 'upernet.pth')
    state = {f'backbone.{k}': v for k, v in src.state_dict().items()}
    state['decode_head.conv_seg.weight'] = torch.zeros(5, 8, 1, 1)
    torch.save({'meta': {'mmcv_version': '1.5.0'}, 'state_dict': state}, path)
    dst = UniRepLKNet(UNIREPLKNET_TINY)
    report = load_pretrained(dst, path)
    assert report['format'] == 'mmseg0.x' and not report['missing']
    assert all(torch.equal(dst.state_dict()[k], v) for k, v in src.state_dict().items())


def test_wrong_variant_and_wrong_family_files_name_both_sides(tmp_path, classifier_file):
    path, _ = classifier_file
    with pytest.raises(CheckpointError, match=r'UniRepLKNet \(dims \(16, 32, 48, 64\).*UniRepLKNet-A'):
        load_pretrained(UniRepLKNet('a', out_indices=(), num_classes=10), path)
    from mmlk.models.repnext.model import RepNeXt
    other = str(tmp_path / 'repnext.pth')
    torch.save({'model': RepNeXt(dict(embed_dims=[16, 32, 64, 128], depths=[1, 1, 2, 1])).state_dict()}, other)
    with pytest.raises(CheckpointError, match='different architecture family'):
        load_pretrained(UniRepLKNet(UNIREPLKNET_TINY), other)
    with pytest.raises(RuntimeError, match='RepNeXt'):
        UniRepLKNet(UNIREPLKNET_TINY).load_state_dict(torch.load(other)['model'])


def test_reparameterize_tool_converts_a_classifier_release(tmp_path, classifier_file):
    import subprocess
    import sys
    path, _ = classifier_file
    dst = str(tmp_path / 'deploy.pth')
    out = subprocess.run([sys.executable, 'tools/model_converters/reparameterize.py', path, dst],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    merged = torch.load(dst, weights_only=True)
    merged = merged.get('model', merged.get('state_dict', merged))
    model = UniRepLKNet(UNIREPLKNET_TINY, out_indices=(), num_classes=10, deploy=True)
    model.load_state_dict(merged)


# ----------------------------------------------------------------------------- layer-wise lr decay
def test_layer_ids_follow_convnext_scheme_of_the_upstream_fine_tuning():
    with torch.device('meta'):
        model = UniRepLKNet('s', num_classes=10)
    ids, num_layers = model.layer_ids([n for n, _ in model.named_parameters()])
    assert num_layers == 12  # 27 blocks in stage 2: 9 groups of 3, as upstream's 12
    assert ids['downsample_layers.0.0.weight'] == 0 and ids['stages.0.0.gamma'] == 1
    assert ids['downsample_layers.1.0.weight'] == 2 and ids['stages.1.2.gamma'] == 2
    assert ids['downsample_layers.2.0.weight'] == 3 and ids['stages.2.2.gamma'] == 3 and ids['stages.2.26.gamma'] == 11
    assert ids['downsample_layers.3.0.weight'] == ids['stages.3.0.gamma'] == 12
    assert ids['head.weight'] == ids['norm0.weight'] == 13
    with torch.device('meta'):
        t = UniRepLKNet('t')
    assert t.layer_ids([n for n, _ in t.named_parameters()])[1] == 3 + math.ceil(18 / 3)


# ----------------------------------------------------------------------------- FLOPs (the repo's FLOPs tool)
@pytest.mark.slow
def test_published_flops_at_224_with_the_repos_counter():
    """The README's ImageNet-1K FLOPs (merged form, 224, one multiply-add = one FLOP), within their rounding."""
    from mmlk.analysis.flops import count_model
    from mmlk.models.unireplknet.timm import TimmUniRepLKNet
    published_g = dict(a=0.6, f=0.9, p=1.6, n=2.8, t=4.9, s=9.1)
    for variant, gflops in published_g.items():
        model = TimmUniRepLKNet(variant).eval()
        model.switch_to_deploy()
        result = count_model(model, (1, 3, 224, 224))
        assert round(result['flops'] / 1e9, 1) == gflops, variant
        assert round(result['params'] / 1e6, 2) == PARAMS_MERGED[variant], variant


def test_mmengine_load_of_a_22k_classifier_into_a_1k_model_still_fine_tunes():
    """mmengine's non-strict load (``load_from``, the hosts' tools) takes a file whose only difference is the
    class count of the classifier the backbone carries: the 22k -> 1k fine-tuning case."""
    from mmengine.runner.checkpoint import load_state_dict
    parent = torch.nn.Module()
    parent.backbone = UniRepLKNet(UNIREPLKNET_TINY, out_indices=(), num_classes=10)
    src = UniRepLKNet(UNIREPLKNET_TINY, out_indices=(), num_classes=21)
    load_state_dict(parent, {f'backbone.{k}': v for k, v in src.state_dict().items()}, strict=False)
    assert torch.equal(parent.backbone.stages[1][0].se.down.weight, src.stages[1][0].se.down.weight)
    assert parent.backbone.head.weight.shape == (10, 64)
    other = UniRepLKNet(dict(UNIREPLKNET_TINY, dims=[32, 64, 96, 128]), out_indices=(), num_classes=10)
    with pytest.raises(CheckpointError, match='not this model'):
        load_state_dict(parent, {f'backbone.{k}': v for k, v in other.state_dict().items()}, strict=False)
