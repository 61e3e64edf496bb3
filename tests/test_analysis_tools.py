"""Analysis and deployment tools on tiny models and inputs: ERF, FLOPs, throughput, feature maps, ONNX, demo."""
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

from mmlk.analysis import erf as erf_lib

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(REPO, 'tools', 'analysis'))
sys.path.insert(0, osp.join(REPO, 'tools', 'deployment'))

TINY_REPLKNET = ("dict(type='mmlk.RepLKNet', arch=dict(large_kernel_sizes=[7, 7, 5, 3], layers=[1, 1, 1, 1], "
                 "channels=[8, 16, 32, 64], small_kernel=3, dw_ratio=1, ffn_ratio=2))")
TINY_REPNEXT = "dict(type='mmlk.RepNeXt', arch=dict(embed_dims=[16, 32, 64, 128], depths=[1, 1, 1, 1]))"
DEMO_CONFIG = osp.join(REPO, 'configs', 'demo', 'upernet_replknet-mini_1xb8-300it_ade20k-mini-128x128.py')


@pytest.fixture(scope='module')
def image_dir(tmp_path_factory) -> str:
    from PIL import Image
    root = tmp_path_factory.mktemp('images')
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(root / f'img{i}.png')
    return str(root)


# ----------------------------------------------------------------------------------------------- ERF
class PlainConvStack(nn.Module):
    """n 3x3 convs, positive weights and biases, no activation: receptive field exactly (2n+1)^2."""

    def __init__(self, n: int) -> None:
        super().__init__()
        convs = [nn.Conv2d(3 if i == 0 else 4, 4, 3, padding=1) for i in range(n)]
        for conv in convs:
            nn.init.uniform_(conv.weight, 0.1, 1.0)
            nn.init.constant_(conv.bias, 10.0)  # keeps the centre output positive, so its ReLU passes gradient
        self.body = nn.Sequential(*convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.mark.parametrize('n', [1, 3, 5])
def test_erf_matrix_is_nonzero_exactly_on_the_known_receptive_field(n):
    torch.manual_seed(0)
    net = PlainConvStack(n)
    batches = [torch.randn(2, 3, 25, 25) for _ in range(2)]
    matrix, used = erf_lib.compute_erf(net, batches, progress=False)
    assert used == 4 and matrix.shape == (25, 25)
    expected = np.zeros((25, 25), bool)
    expected[12 - n:13 + n, 12 - n:13 + n] = True
    assert ((matrix > 0) == expected).all()
    side, ratio = erf_lib.analyze(matrix)[0.99]
    assert side == 2 * n + 1 and ratio == pytest.approx((2 * n + 1) ** 2 / 625)


def test_area_ratio_of_a_uniform_square():
    data = np.zeros((11, 11))
    data[3:8, 3:8] = 1.0
    assert erf_lib.high_contribution_area(data, 0.99) == (5, 25 / 121)
    assert erf_lib.high_contribution_area(data, 0.2) == (3, 9 / 121)
    with pytest.raises(ValueError, match='all zero'):
        erf_lib.high_contribution_area(np.zeros((5, 5)), 0.5)
    with pytest.raises(ValueError, match='non-negative'):
        erf_lib.normalise(-np.ones((3, 3)))


def _replknet_erf(kernel: int) -> dict:
    from mmlk.models import RepLKNet
    torch.manual_seed(0)
    model = RepLKNet(arch=dict(large_kernel_sizes=[kernel] * 4, layers=[1, 1, 1, 1], channels=[8, 16, 32, 64],
                               small_kernel=None, dw_ratio=1, ffn_ratio=2), out_indices=(3, )).eval()
    # At random initialisation the identity shortcuts dominate the residual branches, and the ERF is then
    # the stem's and transitions' whatever the kernel (measured: identical area ratios for K = 3, 9, 21).
    # A larger last-BN scale in every block, as training produces, lets the kernels show.
    for name, module in model.named_modules():
        if name.endswith('pw2.bn'):
            module.weight.data.fill_(4.0)
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(2, 3, 224, 224, generator=gen) for _ in range(2)]
    matrix, _ = erf_lib.compute_erf(lambda x: model.forward_trunk(x)[1], batches, progress=False)
    return erf_lib.analyze(matrix)


def test_larger_kernels_give_larger_erf_area_ratios():
    # Same architecture, seed and images; only the depthwise kernel size changes.
    ratios = {k: _replknet_erf(k) for k in (3, 7, 13)}
    for t in erf_lib.THRESHOLDS:
        assert ratios[3][t][1] < ratios[7][t][1] < ratios[13][t][1], (t, ratios)


def test_erf_cli_compute_and_analyze(tmp_path, image_dir, capsys):
    import erf as erf_tool
    out = str(tmp_path / 'tiny.npy')
    erf_tool.main(['compute', TINY_REPLKNET, '--images', image_dir, '--num-images', '2', '--size', '64',
                   '--out', out])
    matrix = np.load(out)
    assert matrix.shape == (64, 64) and matrix.max() > 0
    assert osp.getsize(str(tmp_path / 'tiny.png')) > 1000
    erf_tool.main(['analyze', out, '--png', str(tmp_path / 'again.png')])
    text = capsys.readouterr().out
    assert 't =   99%' in text and 'area ratio' in text and osp.isfile(str(tmp_path / 'again.png'))


def test_erf_cli_on_a_host_backbone_and_timm_name(tmp_path, image_dir):
    import erf as erf_tool
    from mmlk.analysis.models import build_from_spec, last_stage_fn
    built = build_from_spec("dict(type='mmpretrain.ResNet', depth=18)")
    assert last_stage_fn(built)(torch.randn(1, 3, 64, 64)).shape == (1, 512, 2, 2)
    built = build_from_spec('timm:resnet10t')
    assert last_stage_fn(built)(torch.randn(1, 3, 64, 64)).shape[1] == 512
    with pytest.raises(ValueError, match='neither an existing config'):
        build_from_spec('no_such_model_name')
    with pytest.raises(SystemExit, match='--images'):
        erf_tool.main(['compute', 'timm:resnet10t', '--size', '64'])


# --------------------------------------------------------------------------------------------- FLOPs
def test_flops_of_the_large_kernel_op():
    from mmlk.analysis.flops import count_model
    from mmlk.ops import LargeKernelDWConv2d
    conv = LargeKernelDWConv2d(8, 31, bias=False)
    for impl in ('auto', 'fft'):
        conv.impl = impl
        res = count_model(conv, (1, 8, 40, 40))
        assert res['flops'] == 8 * 40 * 40 * 31 * 31 and res['params'] == 8 * 31 * 31


def test_flops_handle_of_the_custom_op_node():
    from mmlk.analysis.flops import dwconv_flop_handle

    class Value:  # the two methods of a traced jit value the handle reads
        def __init__(self, shape):
            self.shape = shape

        def isCompleteTensor(self):
            return True

        def type(self):
            return self

        def sizes(self):
            return self.shape

    assert dwconv_flop_handle([Value([2, 4, 9, 9]), Value([4, 1, 7, 5])], [Value([2, 4, 9, 9])]) == 2 * 4 * 81 * 35


@pytest.mark.slow
def test_replknet_31b_flops_match_the_paper():
    # RepLKNet paper: 31B at 224, 15.6G before merging, 15.4G after.
    import get_flops
    res = get_flops.main(["dict(type='mmlk.RepLKNet', arch='31B', num_classes=1000, out_indices=())", '--shape', '224'])
    assert res['train']['flops'] / 1e9 == pytest.approx(15.6, abs=0.1)
    assert res['merged']['flops'] / 1e9 == pytest.approx(15.4, abs=0.1)
    assert res['train']['params'] == 79_864_168


@pytest.mark.slow
@pytest.mark.parametrize('config,shape', [
    (DEMO_CONFIG, None),
    ('configs/repnext/fpn_repnext-m3_in1k-pre_8xb4-80k_ade20k-512x512.py', ['128']),
    ('configs/repnext/repnext-m0_8xb256_in1k.py', ['64']),
    ('configs/repnext/mask-rcnn_repnext-m3_in1k-pre_fpn_8xb2-1x_coco.py', ['128']),
])
def test_get_flops_for_seg_cls_det_configs(config, shape):
    import get_flops
    path = osp.join(REPO, config)
    if not osp.isfile(path):
        pytest.skip(f'{config} not in this checkout')
    res = get_flops.main([path] + (['--shape'] + shape if shape else []))
    assert 0 < res['merged']['flops'] < res['train']['flops']


# -------------------------------------------------------------------------------- throughput / maps
def test_throughput_variants():
    import throughput
    results = throughput.main([TINY_REPNEXT, '--shape', '32', '--warmup', '0', '--repeats', '1'])
    names = {(r['form'], r['layout'], r['dtype']) for r in results}
    assert ('train', 'nchw', 'fp32') in names and ('merged', 'channels_last', 'fp32') in names
    assert all(r['ms'] > 0 and r['img_s'] > 0 for r in results)


def test_repnext_feature_map_grid(tmp_path, image_dir):
    import feature_maps
    from mmlk.analysis.feature_maps import branch_maps
    from mmlk.analysis.models import build_from_spec
    out = str(tmp_path / 'fm.png')
    feature_maps.main([TINY_REPNEXT, image_dir, '--size', '64', '--stage', '1', '--out', out])
    assert osp.getsize(out) > 1000
    built = build_from_spec(TINY_REPNEXT)
    maps = branch_maps(built.backbone, torch.randn(2, 3, 64, 64), 0, 0)
    assert set(maps) == {'identity', 'conv_s', 'conv_m', 'conv_l'}
    assert all(m.shape == (2, 16, 16) for m in maps.values())
    with pytest.raises(ValueError, match='blocks 0..0'):
        branch_maps(built.backbone, torch.randn(1, 3, 64, 64), 0, 3)
    with pytest.raises(TypeError, match='not a RepNeXt'):
        branch_maps(build_from_spec(TINY_REPLKNET).backbone, torch.randn(1, 3, 64, 64), 0, 0)


# ------------------------------------------------------------------------------------------- export
@pytest.mark.slow
@pytest.mark.parametrize('config,shape', [
    ('configs/repnext/repnext-m0_8xb256_in1k.py', None),  # real size: 224
    (DEMO_CONFIG, None),  # the demo segmentor at its real 128 px
])
def test_export_onnx_classifier_and_segmentor(tmp_path, config, shape):
    pytest.importorskip('onnx')
    import export_onnx
    out = str(tmp_path / 'model.onnx')
    res = export_onnx.main([osp.join(REPO, config), 'none', '--out', out] + (['--shape'] + shape if shape else []))
    assert res['worst_rel'] <= 1e-4 and osp.isfile(out)


# --------------------------------------------------------------------------------------------- demo
@pytest.mark.slow
def test_demo_console_is_short_and_writes_pictures(tmp_path):
    out = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'demo.py'), '--work-dir', str(tmp_path / 'wd'),
         '--data-root', str(tmp_path / 'data'), '--max-iters', '2', '--num-train', '8', '--num-val', '4',
         '--min-gain', '-100'], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    lines = (out.stdout + out.stderr).splitlines()
    assert len(lines) < 80, '\n'.join(lines)
    # not a terminal: plain progress lines, no bar redrawn with '\r'; host libraries' warnings go to the log file
    assert '\r' not in out.stdout + out.stderr and 'train: 1/2 iterations' in out.stdout
    assert not [line for line in lines if 'Warning' in line or 'warn(' in line], '\n'.join(lines)
    assert 'per class results' not in out.stdout and 'Class' in out.stdout and 'IoU' in out.stdout
    pngs = [line.strip() for line in out.stdout.splitlines() if line.strip().endswith('.png')]
    assert len(pngs) == 5 and any('erf' in p for p in pngs)
    from PIL import Image
    for p in pngs:
        with Image.open(p) as img:
            img.verify()
    assert osp.isfile(str(tmp_path / 'wd' / 'logs' / 'train.log'))
