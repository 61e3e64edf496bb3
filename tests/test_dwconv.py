"""Tests of the large-kernel depthwise convolution op (mmlk.ops.dwconv2d / LargeKernelDWConv2d).

Every route is compared with a float64 ``F.conv2d`` reference for the forward pass and both gradients;
the Triton kernels run under ``TRITON_INTERPRET=1`` in a subprocess (the variable must be set before the
kernels are compiled) on CPU tensors.
"""
import json
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
import torch.nn.functional as F

from mmlk.ops import LargeKernelDWConv2d, dwconv2d
from mmlk.ops import _dispatch, _fourier, route_table
from mmlk.ops import dwconv as dwmod
from mmlk.ops.routes import fft as fft_route
from mmlk.ops.routes import triton as _triton

CPU_IMPLS = ['auto', 'cl', 'fft', 'dft']


def _data(n, c, h, w, kh, kw, dtype=torch.float64, seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    wt = torch.randn(c, 1, kh, kw, generator=g, dtype=torch.float64) / (kh * kw) ** 0.5
    b = torch.randn(c, generator=g, dtype=torch.float64) if bias else None
    gy = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    cast = (lambda t: None if t is None else t.to(dtype))
    return cast(x), cast(wt), cast(b), cast(gy)


def _reference(x, wt, b, gy):
    """float64 F.conv2d forward and gradients of the (already rounded) inputs."""
    xr = x.double().requires_grad_()
    wr = wt.double().requires_grad_()
    br = None if b is None else b.double().requires_grad_()
    kh, kw = wt.shape[-2:]
    y = F.conv2d(xr, wr, br, 1, (kh // 2, kw // 2), 1, x.shape[1])
    y.backward(gy.double())
    return y.detach(), xr.grad, wr.grad, None if br is None else br.grad


def _run(x, wt, b, gy, impl):
    xr = x.detach().clone().requires_grad_()
    wr = wt.detach().clone().requires_grad_()
    br = None if b is None else b.detach().clone().requires_grad_()
    y = dwconv2d(xr, wr, br, impl)
    y.backward(gy)
    return y.detach(), xr.grad, wr.grad, None if br is None else br.grad


def _rel(a, ref):
    return ((a.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


# ----------------------------------------------------------------------------------------------
# numerics
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize('impl', ['torch', 'cl', 'fft', 'dft'])
def test_gradcheck_float64(impl):
    x, wt, b, _ = _data(2, 3, 7, 8, 5, 3)
    inputs = tuple(t.requires_grad_() for t in (x, wt, b))
    assert torch.autograd.gradcheck(lambda a, w, c: dwconv2d(a, w, c, impl), inputs, fast_mode=True)


def test_custom_op_registration():
    """opcheck: schema, fake (meta) implementation, autograd registration of mmlk::dwconv2d."""
    for impl in ('fft', 'cl'):
        x, wt, b, _ = _data(2, 3, 6, 7, 5, 3, dtype=torch.float32)
        args = (x.requires_grad_(), wt.requires_grad_(), b.requires_grad_(), impl)
        torch.library.opcheck(dwmod._dwconv2d_op, args)
    x, wt, b, _ = _data(2, 3, 6, 7, 5, 3)
    inputs = tuple(t.requires_grad_() for t in (x, wt, b))
    assert torch.autograd.gradcheck(lambda a, w, c: dwmod._dwconv2d_op(a, w, c, 'dft'), inputs, fast_mode=True)


SHAPES = [  # (n, c, h, w, kh, kw)
    (2, 4, 12, 11, 3, 3),
    (2, 3, 13, 9, 7, 7),
    (1, 5, 10, 10, 1, 9),
    (1, 5, 10, 10, 9, 1),
    (2, 3, 8, 12, 13, 13),
    (1, 2, 16, 16, 31, 31),  # kernel larger than the map: cropped to the taps that can touch data
    (1, 3, 3, 4, 13, 5),
]


@pytest.mark.parametrize('impl', CPU_IMPLS)
@pytest.mark.parametrize('shape', SHAPES, ids=lambda s: 'x'.join(map(str, s)))
def test_fp32_matches_float64(impl, shape):
    x, wt, b, gy = _data(*shape, dtype=torch.float32)
    got = _run(x, wt, b, gy, impl)
    ref = _reference(x, wt, b, gy)
    for name, a, r in zip(('y', 'grad_x', 'grad_w', 'grad_b'), got, ref):
        assert a.dtype == torch.float32
        assert _rel(a, r) < 1e-4, (name, _rel(a, r))


@pytest.mark.parametrize('dtype,tol', [(torch.bfloat16, 1.6e-2), (torch.float16, 2e-3)])
@pytest.mark.parametrize('impl', ['fft', 'dft', 'cl'])
def test_half_dtypes(dtype, tol, impl):
    x, wt, b, gy = _data(2, 4, 12, 10, 7, 5, dtype=dtype)
    got = _run(x, wt, b, gy, impl)
    ref = _reference(x, wt, b, gy)
    for name, a, r in zip(('y', 'grad_x', 'grad_w', 'grad_b'), got, ref):
        assert a.dtype == dtype, name
        assert _rel(a, r) < tol, (name, _rel(a, r))


@pytest.mark.parametrize('impl', ['auto', 'fft', 'dft', 'cl', 'torch'])
def test_channels_last_in_channels_last_out(impl):
    x, wt, b, gy = _data(2, 6, 11, 9, 9, 9, dtype=torch.float32)
    x = x.contiguous(memory_format=torch.channels_last)
    gy = gy.contiguous(memory_format=torch.channels_last)
    got = _run(x, wt, b, gy, impl)
    ref = _reference(x, wt, b, gy)
    assert got[0].is_contiguous(memory_format=torch.channels_last)
    assert got[1].is_contiguous(memory_format=torch.channels_last)
    for a, r in zip(got, ref):
        assert _rel(a, r) < 1e-4


def test_nchw_stays_nchw():
    x, wt, b, gy = _data(1, 4, 9, 9, 7, 7, dtype=torch.float32)
    for impl in ('cl', 'fft', 'dft'):
        y, gx, _, _ = _run(x, wt, b, gy, impl)
        assert y.is_contiguous() and gx.is_contiguous()


def test_routes_agree_pass_by_pass():
    """Every CPU route of every pass it has (aten, transposed aten, FFT, DFT) computes the same numbers."""
    x, wt, _, gy = _data(2, 4, 10, 12, 11, 7, dtype=torch.float32)
    ref_y, ref_gx, ref_gw, _ = _reference(x, wt, None, gy)
    assert set(route_table.names('cpu')) == {'nchw', 'cl', 'nchw_t', 'cl_t', 'fft', 'dft'}
    for route in route_table.names('cpu'):
        assert _rel(route_table.run_forward(x, wt, route), ref_y) < 1e-4, route
        assert _rel(route_table.run_input_grad(gy, wt, route), ref_gx) < 1e-4, route
    for route in route_table.names('cpu', 'gw'):
        assert _rel(route_table.run_weight_grad(gy, x, wt, route), ref_gw) < 1e-4, route
    # one fused pass per Fourier route gives both gradients
    for route in ('fft', 'dft'):
        gx, gw = route_table.run_backward(gy, x, wt, route, route, True, True)
        assert _rel(gx, ref_gx) < 1e-4 and _rel(gw, ref_gw) < 1e-4, route


def test_smooth_sizes():
    assert [fft_route.smooth_size(n) for n in (1, 7, 71, 97, 121)] == [1, 8, 72, 100, 125]
    assert fft_route.smooth_size(71, even=True) == 72 and fft_route.smooth_size(75, even=True) == 80


# ----------------------------------------------------------------------------------------------
# module, envelope and fallbacks
# ----------------------------------------------------------------------------------------------
def test_module_is_a_true_conv2d():
    m = LargeKernelDWConv2d(8, (31, 5), bias=True)
    assert isinstance(m, torch.nn.Conv2d)
    assert m.padding == (15, 2) and m.groups == 8 and m.weight.shape == (8, 1, 31, 5)
    x = torch.randn(2, 8, 12, 12)
    ref = F.conv2d(x, m.weight, m.bias, 1, (15, 2), 1, 8)
    torch.testing.assert_close(m(x), ref, rtol=1e-4, atol=1e-5)
    # a plain nn.Conv2d with the same state dict gives the same answer (merging code relies on this)
    plain = torch.nn.Conv2d(8, 8, (31, 5), padding=(15, 2), groups=8)
    plain.load_state_dict(m.state_dict())
    torch.testing.assert_close(plain(x), m(x), rtol=1e-4, atol=1e-5)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match='odd'):
        LargeKernelDWConv2d(4, 4)
    with pytest.raises(ValueError, match='impl'):
        LargeKernelDWConv2d(4, 7, impl='cuda')
    with pytest.raises(ValueError, match='impl'):
        dwconv2d(torch.randn(1, 2, 5, 5), torch.randn(2, 1, 3, 3), impl='nope')
    if not _triton.usable_on(torch.empty(0)):
        with pytest.raises(RuntimeError, match='triton'):
            dwconv2d(torch.randn(1, 2, 5, 5), torch.randn(2, 1, 3, 3), impl='triton')


def _is_custom(y):
    return y.grad_fn is not None and 'ConvolutionBackward' not in type(y.grad_fn).__name__


@pytest.mark.parametrize('impl', ['fft', 'auto'])
def test_fallback_outside_envelope(impl):
    x = torch.randn(2, 4, 10, 10, requires_grad=True)
    # channel multiplier 2 (not depthwise)
    w_mult = torch.randn(8, 1, 5, 5)
    y = dwconv2d(x, w_mult, None, impl)
    assert y.shape == (2, 8, 10, 10) and not _is_custom(y)
    torch.testing.assert_close(y, F.conv2d(x, w_mult, None, 1, 2, 1, 4))
    # mixed dtypes fall back to F.conv2d, which raises its own error
    with pytest.raises(RuntimeError):
        dwconv2d(x, torch.randn(4, 1, 5, 5, dtype=torch.float64), None, impl)
    # the custom op is used inside the envelope
    assert _is_custom(dwconv2d(x, torch.randn(4, 1, 5, 5, requires_grad=True), None, 'fft'))


def test_auto_dispatch_small_and_large():
    # tiny convs: plain F.conv2d without dispatch
    x = torch.randn(1, 4, 10, 10, requires_grad=True)
    assert not _is_custom(dwconv2d(x, torch.randn(4, 1, 7, 7, requires_grad=True)))
    # K31 on 56x56: the table sends the weight gradient to a Fourier route
    x = torch.randn(1, 8, 56, 56, requires_grad=True)
    w = (torch.randn(8, 1, 31, 31) / 31).requires_grad_()
    y = dwconv2d(x, w)
    assert _is_custom(y)
    ref = _reference(x.detach(), w.detach(), None, torch.ones_like(y))
    y.sum().backward()
    for a, r in zip((y, x.grad, w.grad), ref[:3]):
        assert _rel(a, r) < 1e-4


def test_module_fallback_for_stride_and_dilation():
    m = LargeKernelDWConv2d(4, 7, impl='fft')
    x = torch.randn(1, 4, 15, 15)
    m.stride = (2, 2)
    torch.testing.assert_close(m(x), F.conv2d(x, m.weight, None, 2, 3, 1, 4))
    m.stride, m.dilation, m.padding = (1, 1), (2, 2), (6, 6)
    torch.testing.assert_close(m(x), F.conv2d(x, m.weight, None, 1, 6, 2, 4))


# ----------------------------------------------------------------------------------------------
# compile / export
# ----------------------------------------------------------------------------------------------
class _Block(torch.nn.Module):
    def __init__(self, impl='fft'):
        super().__init__()
        self.pw = torch.nn.Conv2d(4, 4, 1)
        self.lk = LargeKernelDWConv2d(4, 9, bias=True, impl=impl)

    def forward(self, x):
        return torch.relu(self.lk(self.pw(x))) + x


def test_torch_compile_forward_and_backward():
    torch.manual_seed(0)
    m = _Block('fft')
    cm = torch.compile(m, fullgraph=True, backend='inductor')
    x = torch.randn(2, 4, 12, 12, requires_grad=True)
    y_ref = m(x)
    y = cm(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    g_ref = torch.autograd.grad(y_ref.sum(), [x, m.lk.weight, m.lk.bias])
    g = torch.autograd.grad(cm(x).sum(), [x, m.lk.weight, m.lk.bias])
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_torch_export_keeps_one_op():
    m = _Block('fft').eval()
    x = torch.randn(1, 4, 10, 10)
    ep = torch.export.export(m, (x,))
    targets = [str(n.target) for n in ep.graph.nodes if n.op == 'call_function']
    assert 'mmlk.dwconv2d.default' in targets
    torch.testing.assert_close(ep.module()(x), m(x))


def test_onnx_export_gives_plain_conv(tmp_path):
    onnx = pytest.importorskip('onnx')
    m = _Block('auto').eval()
    x = torch.randn(1, 4, 10, 10)
    path = str(tmp_path / 'block.onnx')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(m, (x,), path, dynamo=False)
    ops = [n.op_type for n in onnx.load(path).graph.node]
    assert ops.count('Conv') == 2 and not any('dwconv' in o for o in ops)


def test_jit_trace_uses_conv():
    m = _Block('fft').eval()
    x = torch.randn(1, 4, 10, 10)
    traced = torch.jit.trace(m, (x,))
    graph = str(traced.inlined_graph)
    assert 'mmlk::dwconv2d' not in graph and graph.count('aten::_convolution') == 2
    torch.testing.assert_close(traced(x), m(x))


# ----------------------------------------------------------------------------------------------
# dispatch table
# ----------------------------------------------------------------------------------------------
def test_table_never_selects_a_slower_route():
    entries = _dispatch.load_table()
    assert entries, f'{_dispatch.TABLE_PATH} is missing: run tools/analysis/benchmark_dwconv.py --write-table'
    for e in entries:
        for lay in ('nchw', 'cl'):
            for p in _dispatch.PASSES:
                times = e['times'][lay][p]
                chosen = e['route'][lay][p]
                where = (e['kh'], e['kw'], e['h'], e['n'], lay, p, times)
                assert chosen == _dispatch.best_route(times, native=lay), where
                # never slower than F.conv2d in the input's layout, nor (beyond the noise margin) in the other
                assert times[chosen] <= times[lay], where
                assert times[chosen] <= min(times['nchw'], times['cl']) * _dispatch.MARGIN + _dispatch.MIN_GAIN, where


def test_table_covers_the_benchmark_shapes():
    entries = _dispatch.load_table()
    for c, h, k in ((128, 56, 31), (256, 28, 29), (512, 14, 27), (1024, 7, 13)):
        exact = [e for e in entries if (e['c'], e['h'], e['kh'], e['n']) == (c, h, k, 1)]
        assert exact, (c, h, k)
        for lay in ('nchw', 'cl'):
            expected = tuple(exact[0]['route'][lay][p] for p in _dispatch.PASSES)
            assert _dispatch.select_routes(k, k, h, h, 1, lay == 'cl', c) == expected
    # K=31 at 56x56: oneDNN's weight gradient is far off, the table must not keep it
    for cl in (False, True):
        assert route_table.get(_dispatch.select_routes(31, 31, 56, 56, 1, cl, 128)[2]).finite_only  # Fourier


def test_unknown_shapes_stay_on_torch():
    # nothing measured near a 3x3 kernel on a 300x300 map: exactly F.conv2d's own route in each layout
    assert _dispatch.select_routes(3, 3, 300, 300, 1, False) == ('nchw',) * 3
    assert _dispatch.select_routes(3, 3, 300, 300, 1, True) == ('cl',) * 3
    fake = ({'kh': 31, 'kw': 31, 'h': 56, 'w': 56, 'n': 1, 'c': 8},)
    assert _dispatch.nearest_entry(29, 29, 56, 56, 2, entries=fake) is fake[0]
    assert _dispatch.nearest_entry(5, 5, 56, 56, 2, entries=fake) is None


def test_best_route_margin():
    assert _dispatch.best_route({'nchw': 1.0, 'cl': 0.5, 'fft': 0.49}, 'nchw') == 'fft'
    assert _dispatch.best_route({'nchw': 1.0, 'cl': 0.95, 'fft': 0.85}, 'nchw') == 'nchw'  # within the margin
    assert _dispatch.best_route({'nchw': 3e-4, 'cl': 1.5e-4}, 'nchw') == 'nchw'  # 150 us: below the noise floor
    assert _dispatch.best_route({'nchw': 0.3, 'cl': 0.5, 'fft': 0.1}, 'cl') == 'fft'
    assert _dispatch.best_route({'nchw': 0.3, 'cl': 0.5, 'fft': 0.4}, 'cl') == 'nchw'


# ----------------------------------------------------------------------------------------------
# Triton kernels (interpreter on CPU) and packaging
# ----------------------------------------------------------------------------------------------
def test_kernel_sources_are_found():
    path = _triton.find_kernel_file()
    assert path.endswith(os.path.join('kernels', 'triton_dwconv.py'))


TRITON_SCRIPT = textwrap.dedent('''
    import json, os, sys, warnings
    os.environ['TRITON_INTERPRET'] = '1'
    import torch, torch.nn.functional as F
    sys.path.insert(0, sys.argv[1])
    from mmlk.ops import dwconv2d
    from mmlk.ops.routes import triton as _triton
    out = {}
    cases = [(2, 5, 6, 7, 3, 3), (1, 6, 5, 6, 5, 5), (1, 4, 6, 6, 1, 5), (2, 3, 5, 7, 7, 3)]
    # fp32: every case in both layouts; fp16 / bf16 (slow under the interpreter): half the cases, one layout each
    plan = [(torch.float32, case, cl) for case in cases for cl in (True, False)]
    plan += [(torch.float16, cases[1], True), (torch.float16, cases[3], False),
             (torch.bfloat16, cases[0], False), (torch.bfloat16, cases[2], True)]
    for dt, (n, c, h, w, kh, kw), cl in plan:
        g = torch.Generator().manual_seed(n * 100 + kh * 10 + kw)
        x = torch.randn(n, c, h, w, generator=g).to(dt)
        wt = torch.randn(c, 1, kh, kw, generator=g).to(dt)
        b = torch.randn(c, generator=g).to(dt)
        gy = torch.randn(n, c, h, w, generator=g).to(dt)
        if cl:
            x, gy = (t.contiguous(memory_format=torch.channels_last) for t in (x, gy))
        pad = (kh // 2, kw // 2)
        ref_y = F.conv2d(x.double(), wt.double(), b.double(), 1, pad, 1, c)
        ref_gx, ref_gw, _ = torch.ops.aten.convolution_backward(
            gy.double(), x.double(), wt.double(), None, [1, 1], list(pad), [1, 1], False, [0, 0], c,
            [True, True, False])
        xr, wr, br = (t.clone().requires_grad_() for t in (x, wt, b))
        y = dwconv2d(xr, wr, br, 'triton')
        y.backward(gy)
        rel = lambda a, r: ((a.double() - r).abs().max() / r.abs().max()).item()
        key = f'{dt}-{n}x{c}x{h}x{w}-k{kh}x{kw}-cl{int(cl)}'
        out[key] = dict(y=rel(y, ref_y), gx=rel(xr.grad, ref_gx), gw=rel(wr.grad, ref_gw),
                        dtype=str(y.dtype), cl=bool(y.is_contiguous(memory_format=torch.channels_last)))
    out['self_check'] = _triton.self_check(torch.device('cpu'))
    print('RESULT' + json.dumps(out))
''')


@pytest.mark.slow
def test_triton_kernels_under_interpreter(repo_root):
    env = dict(os.environ, TRITON_INTERPRET='1')
    proc = subprocess.run([sys.executable, '-c', TRITON_SCRIPT, repo_root], capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT')][-1]
    res = json.loads(line[len('RESULT'):])
    assert res.pop('self_check') is True
    tol = {'torch.float32': 1e-5, 'torch.float16': 2e-3, 'torch.bfloat16': 1.6e-2}
    assert len(res) == 12
    for key, r in res.items():
        dt = key.split('-')[0]
        assert r['dtype'] == dt, key
        assert r['cl'] == key.endswith('cl1'), key
        for p in ('y', 'gx', 'gw'):
            assert r[p] < tol[dt], (key, p, r[p])


def test_triton_self_check_warns_once_and_falls_back(monkeypatch):
    """A kernel that returns wrong numbers must fail the self-check with one warning, cached."""
    monkeypatch.setattr(_triton, '_self_check', {})
    monkeypatch.setattr(_triton, 'forward', lambda x, w, b=None, flip=False: torch.zeros_like(x))
    with pytest.warns(RuntimeWarning, match='self-check'):
        assert _triton.self_check(torch.device('cpu')) is False
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert _triton.self_check(torch.device('cpu')) is False


# ----------------------------------------------------------------------------------------------
# argument checks (issue #11, item 11): the op rejects what F.conv2d with 'same' padding would get wrong
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize('impl', ['auto', 'torch', 'cl', 'fft', 'dft'])
def test_even_kernel_raises(impl):
    with pytest.raises(ValueError, match='odd kernel'):
        dwconv2d(torch.randn(1, 4, 9, 9), torch.randn(4, 1, 4, 4), None, impl)
    with pytest.raises(ValueError, match='odd kernel'):
        dwconv2d(torch.randn(1, 4, 9, 9), torch.randn(4, 1, 3, 4), None, impl)


@pytest.mark.parametrize('impl', ['auto', 'cl', 'fft', 'dft'])
@pytest.mark.parametrize('bias', [torch.randn(1), torch.randn(4, 1), torch.randn(4, dtype=torch.float64)],
                         ids=['shape1', 'shapeC1', 'float64'])
def test_bad_bias_raises_like_conv2d(impl, bias):
    # a shape large enough for 'auto' to dispatch rather than skip to F.conv2d
    x, w = torch.randn(2, 4, 40, 40), torch.randn(4, 1, 13, 13)
    with pytest.raises(RuntimeError) as ref:
        F.conv2d(x, w, bias, 1, 6, 1, 4)
    with pytest.raises(RuntimeError) as got:
        dwconv2d(x, w, bias, impl)
    assert str(got.value) == str(ref.value)


def test_a_call_seen_before_is_still_checked_and_follows_grad_mode_and_autocast():
    """The eager memo of decided calls (one lookup instead of the checks) keys on everything the checks and the
    decision read: a bad bias after a good call with the same input still raises F.conv2d's error, every time;
    grad mode and autocast still change what runs."""
    x, w = torch.randn(2, 4, 40, 40), torch.randn(4, 1, 13, 13)
    good, bad = torch.randn(4), torch.randn(4, dtype=torch.float64)
    torch.testing.assert_close(dwconv2d(x, w, good), F.conv2d(x, w, good, 1, 6, 1, 4))
    for _ in range(2):
        with pytest.raises(RuntimeError):
            dwconv2d(x, w, bad)
    wr = w.clone().requires_grad_()
    y = dwconv2d(x, wr, good)
    assert y.requires_grad
    y.sum().backward()
    ref = w.clone().requires_grad_()
    F.conv2d(x, ref, good, 1, 6, 1, 4).sum().backward()
    torch.testing.assert_close(wr.grad, ref.grad, rtol=1e-4, atol=1e-3)
    with torch.no_grad():
        assert not dwconv2d(x, wr, good).requires_grad
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert dwconv2d(x, w, good).dtype == torch.bfloat16
    assert dwconv2d(x, w, good).dtype == torch.float32


# ----------------------------------------------------------------------------------------------
# non-finite inputs (issue #11, item 8): F.conv2d's NaN / Inf pattern on every route
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize('impl', ['auto', 'torch', 'cl', 'fft', 'dft'])
@pytest.mark.parametrize('bad', [float('nan'), float('inf')], ids=['nan', 'inf'])
def test_nonfinite_pixel_stays_local(impl, bad):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 56, 56, generator=g)
    x[0, 0, 20, 30] = bad
    w = torch.randn(2, 1, 31, 31, generator=g) / 31
    gy = torch.randn(1, 2, 56, 56, generator=g)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    y = dwconv2d(xr, wr, None, impl)
    y.backward(gy)
    xt, wt = x.clone().requires_grad_(), w.clone().requires_grad_()
    ref = F.conv2d(xt, wt, None, 1, 15, 1, 2)
    ref.backward(gy)
    for a, r in ((y, ref), (xr.grad, xt.grad), (wr.grad, wt.grad)):
        assert torch.equal(a.isnan(), r.isnan()) and torch.equal(a.isinf(), r.isinf())
    # the NaN / Inf reaches only the kernel's footprint (F.conv2d: 31x31 minus the border for NaN)
    assert int(y.isnan().sum() + y.isinf().sum()) == int(ref.isnan().sum() + ref.isinf().sum()) < 56 * 56
    finite = ref.isfinite()
    torch.testing.assert_close(y[finite], ref.detach()[finite], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('impl', ['fft', 'dft'])
def test_nonfinite_gradient_stays_local(impl):
    x = torch.randn(1, 2, 28, 28, requires_grad=True)
    w = (torch.randn(2, 1, 13, 13) / 13).requires_grad_()
    gy = torch.randn(1, 2, 28, 28)
    gy[0, 1, 3, 3] = float('nan')
    dwconv2d(x, w, None, impl).backward(gy)
    xt, wt = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    F.conv2d(xt, wt, None, 1, 6, 1, 2).backward(gy)
    assert torch.equal(x.grad.isnan(), xt.grad.isnan()) and torch.equal(w.grad.isnan(), wt.grad.isnan())


# ----------------------------------------------------------------------------------------------
# Fourier round-off far from a large value (issue #11, item 9): bounded by the documented error model
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize('impl', ['fft', 'dft'])
def test_fourier_error_model_bound(impl):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 40, 40, generator=g)
    x[0, 0, 5, 5] = 1e6
    w = torch.randn(2, 1, 7, 7, generator=g) / 7
    y = dwconv2d(x, w, None, impl)
    ref = F.conv2d(x.double(), w.double(), None, 1, 3, 1, 2)
    err = (y.double() - ref).abs()
    # error model (see mmlk.ops._fourier): |err| <= ERROR_FACTOR * eps_fp32 * max|x| * sum|w| per plane, everywhere
    bound = _fourier.fourier_error_bound(x, w)
    assert (err <= bound.view(1, -1, 1, 1)).all(), (err.amax((0, 2, 3)), bound)
    # far from the large value (outside its 7x7 footprint) the error is round-off, not signal
    far = err[0, 0, 20:, 20:]
    assert far.max() > 0 and far.max() <= bound[0]
    # a plane without the large value keeps fp32 accuracy
    assert err[0, 1].max() < 1e-4


# ----------------------------------------------------------------------------------------------
# double backward (issue #11, item 10)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize('impl', ['auto', 'cl', 'fft', 'dft'])
def test_double_backward(impl):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 9, 8, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda a, k, c: dwconv2d(a, k, c, impl), (x, w, b))


@pytest.mark.parametrize('impl', ['auto', 'fft', 'dft'])
def test_double_backward_real_shape(impl):
    """The failing case of the issue: a weight-gradient penalty at a real RepLKNet shape, fp32."""
    x = torch.randn(1, 8, 28, 28, requires_grad=True)
    w = (torch.randn(8, 1, 29, 29) / 29).requires_grad_()
    gw, = torch.autograd.grad(dwconv2d(x, w, None, impl).square().sum(), w, create_graph=True)
    gw.square().sum().backward()
    xt, wt = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    gwt, = torch.autograd.grad(F.conv2d(xt, wt, None, 1, 14, 1, 8).square().sum(), wt, create_graph=True)
    gwt.square().sum().backward()
    for a, r in ((x.grad, xt.grad), (w.grad, wt.grad)):
        assert _rel(a, r.double()) < 1e-4


# ----------------------------------------------------------------------------------------------
# runtime tuner (issue #12)
# ----------------------------------------------------------------------------------------------
from mmlk.ops import _tune  # noqa: E402


class FakeTimer:
    """Injected timings: ``times[pass][route]`` seconds, without running anything; records what was timed."""

    def __init__(self, times=None, default=1.0):
        self.times = times or {}
        self.default = default
        self.calls = []

    def __call__(self, fn, device):
        if fn.probe_scale > 1:  # a reduced probe of the problem: proportionally faster
            return self.times.get(fn.pass_name, {}).get(fn.route, self.default) / fn.probe_scale
        self.calls.append((fn.pass_name, fn.route))
        return self.times.get(fn.pass_name, {}).get(fn.route, self.default)


@pytest.fixture
def tuning(monkeypatch, tmp_path):
    """Tuning on, a private cache dir, clean memos; yields a function installing a fake timer."""
    monkeypatch.setenv('MMLK_DWCONV_TUNE', '1')
    monkeypatch.setenv('MMLK_CACHE_DIR', str(tmp_path))
    dwmod.reset_decisions()

    def install(timer):
        _tune.set_timer(timer)
        return timer

    yield install
    _tune.set_timer(None)
    dwmod.reset_decisions()


def _problem(cl=True, n=1, c=8, h=28, k=29, grad=True):
    x = torch.randn(n, c, h, h)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(c, 1, k, k) / k
    return x.requires_grad_(grad), w.requires_grad_(grad)


def test_tuner_picks_fastest_and_keeps_native_within_margin(tuning):
    timer = tuning(FakeTimer({'fwd': {'cl': 1.0, 'fft': 0.5, 'dft': 0.6},
                              'gx': {'cl': 1.0, 'dft': 0.99},  # within the noise margin: stay native
                              'gw': {'dft': 0.2}}))
    x, w = _problem()
    y = dwconv2d(x, w)
    assert dwmod._routes(x, w, 'auto') == ('fft', 'cl', 'dft')
    assert {p for p, _ in timer.calls} == {'fwd', 'gx', 'gw'}
    y.sum().backward()  # the chosen routes run and are correct
    ref = _reference(x.detach(), w.detach(), None, torch.ones_like(y))
    for a, r in zip((y, x.grad, w.grad), ref[:3]):
        assert _rel(a, r) < 1e-4
    # the native route (F.conv2d in the input's layout) is always among the timed ones
    assert ('fwd', 'cl') in timer.calls and ('gx', 'cl') in timer.calls


class NoisyWinTimer(FakeTimer):
    """``fast`` looks ``first`` seconds in its first ``lucky`` timings (a noisy round), ``later`` afterwards."""

    def __init__(self, pass_name, fast, first, later, lucky, default=1.0):
        super().__init__({pass_name: {fast: first}}, default)
        self.pass_name, self.fast, self.later, self.lucky = pass_name, fast, later, lucky

    def __call__(self, fn, device):
        t = super().__call__(fn, device)
        if fn.probe_scale == 1 and (fn.pass_name, fn.route) == (self.pass_name, self.fast):
            self.lucky -= 1
            if self.lucky < 0:
                return self.later
        return t


@pytest.mark.parametrize('later,expected', [(1.0, 'cl'), (0.8, 'dft')])
def test_tuner_confirms_a_modest_win_head_to_head(tuning, later, expected):
    """A route that won one round by 20% is timed again against F.conv2d: kept only if it still wins."""
    timer = tuning(NoisyWinTimer('gx', 'dft', first=0.8, later=later, lucky=16))
    x, w = _problem()
    dwconv2d(x, w)
    assert dwmod._routes(x, w, 'auto')[1] == expected
    assert timer.calls.count(('gx', 'dft')) > 16 and timer.calls.count(('gx', 'cl')) >= 7 + 2


class LoadedNativeTimer(FakeTimer):
    """F.conv2d's route ('cl' on channels_last) usually looks slow (load), but every 4th sample shows its real cost."""

    def __call__(self, fn, device):
        t = super().__call__(fn, device)
        if (fn.pass_name, fn.route) == ('gx', 'cl') and fn.probe_scale == 1:
            return 0.7 if self.calls.count(('gx', 'cl')) % 4 == 0 else 1.0
        return t


def test_tuner_keeps_native_when_it_is_faster_at_its_best(tuning):
    """A challenger that wins on medians but not on the fastest samples (noise only adds time) is not kept."""
    tuning(LoadedNativeTimer({'gx': {'dft': 0.8}}))
    x, w = _problem()
    dwconv2d(x, w)
    assert dwmod._routes(x, w, 'auto')[1] == 'cl'


def test_tuner_inference_times_forward_only(tuning):
    timer = tuning(FakeTimer({'fwd': {'cl': 1.0}}, default=2.0))
    x, w = _problem(grad=False)
    with torch.no_grad():
        y = dwconv2d(x, w)
    assert {p for p, _ in timer.calls} == {'fwd'}
    assert not _is_custom(y)  # cl won: plain F.conv2d, no wrapper
    torch.testing.assert_close(y, F.conv2d(x, w, None, 1, 14, 1, 8), rtol=1e-4, atol=1e-5)


def test_tuner_cache_round_trip(tuning, tmp_path):
    tuning(FakeTimer({'fwd': {'dft': 0.1}, 'gx': {'fft': 0.1}, 'gw': {'dft': 0.1}}))
    x, w = _problem(cl=False)
    dwconv2d(x, w)
    files = list((tmp_path / 'dwconv_tune').glob('cpu-*.json'))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert data['machine']['threads'] == torch.get_num_threads() and data['machine']['torch'] == torch.__version__
    (entry,) = data['entries'].values()
    assert {p: entry[p]['route'] for p in ('fwd', 'gx', 'gw')} == {'fwd': 'dft', 'gx': 'fft', 'gw': 'dft'}
    # a new process (memory cleared) reads the file back without timing anything
    dwmod.reset_decisions()
    timer = tuning(FakeTimer())
    dwconv2d(x, w)
    assert timer.calls == [] and dwmod._routes(x, w, 'auto') == ('dft', 'fft', 'dft')


def test_tuner_corrupted_cache_is_ignored_with_a_warning(tuning, tmp_path):
    x, w = _problem()
    path = _tune.get_tuner().cache_path(x.device)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write('{"version": 1, "entries": {"cpu|float32')  # truncated write
    timer = tuning(FakeTimer({'fwd': {'fft': 0.1}}))
    with pytest.warns(RuntimeWarning, match='unreadable'):
        dwconv2d(x, w)
    assert timer.calls  # tuned afresh
    assert json.load(open(path))['entries']  # and rewritten as valid JSON


def test_tuner_switched_off_uses_the_table(tuning, monkeypatch):
    timer = tuning(FakeTimer({'fwd': {'fft': 1e-9}}))
    monkeypatch.setenv('MMLK_DWCONV_TUNE', '0')
    x, w = _problem(h=56, k=31)
    dwconv2d(x, w)
    assert timer.calls == []
    assert dwmod._routes(x, w, 'auto') == _dispatch.select_routes(31, 31, 56, 56, 1, True, 8)


def test_tuner_not_used_under_torch_compile(tuning):
    timer = tuning(FakeTimer())
    torch.manual_seed(0)
    m = _Block('auto')
    m.lk = LargeKernelDWConv2d(4, 9, bias=True, impl='auto')
    cm = torch.compile(m, fullgraph=True, backend='aot_eager')
    x = torch.randn(8, 4, 48, 48, requires_grad=True)  # large enough for 'auto' to dispatch
    y = cm(x)
    y.sum().backward()
    assert timer.calls == []
    torch.testing.assert_close(y, m(x), rtol=1e-4, atol=1e-5)


DIST_SCRIPT = textwrap.dedent('''
    import json, os, sys
    sys.path.insert(0, os.path.join(sys.argv[1], 'tools', 'analysis'))
    from ops_loader import load_ops
    ops = load_ops(sys.argv[1])
    import torch, torch.distributed as dist
    from mmlk.ops import _tune, dwconv
    dist.init_process_group('gloo')
    rank = dist.get_rank()
    prefer = 'fft' if rank == 0 else 'dft'  # each rank's own timings would disagree
    def timer(fn, device):
        return 0.1 if fn.route == prefer else 1.0
    _tune.set_timer(timer)
    x = torch.randn(1, 8, 28, 28, requires_grad=True)
    w = (torch.randn(8, 1, 29, 29) / 29).requires_grad_()
    ops.dwconv2d(x, w).sum().backward()
    print('ROUTES' + json.dumps(dwconv._routes(x, w, 'auto')))
    dist.destroy_process_group()
''')


@pytest.mark.slow
def test_tuner_distributed_ranks_agree(tmp_path, repo_root):
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = dict(os.environ, MMLK_DWCONV_TUNE='1', MMLK_CACHE_DIR=str(tmp_path / f'cache{rank}'), RANK=str(rank),
                   WORLD_SIZE='2', MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, '-c', DIST_SCRIPT, repo_root], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=300) for p in procs]
    routes = []
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        routes.append(json.loads([ln for ln in out.splitlines() if ln.startswith('ROUTES')][-1][6:]))
    assert routes[0] == routes[1] == ['fft', 'fft', 'fft']  # rank 0's choice everywhere
    assert list((tmp_path / 'cache0' / 'dwconv_tune').glob('*.json'))  # rank 0 timed and cached
    assert not (tmp_path / 'cache1').exists()  # rank 1 neither timed nor wrote a cache


IMPORT_SCRIPT = textwrap.dedent('''
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in ('mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain'):
                raise ImportError(f'{name} is blocked')
            return None
    sys.meta_path.insert(0, Block())
    sys.path.insert(0, sys.argv[1])
    if sys.argv[2] == 'loader':
        sys.path.insert(0, sys.argv[1] + '/tools/analysis')
        from ops_loader import load_ops
        ops = load_ops(sys.argv[1])
    else:
        import mmlk.ops as ops
    import mmlk
    assert mmlk.__file__.startswith(sys.argv[1]), mmlk.__file__
    import torch, torch.nn.functional as F
    x, w = torch.randn(1, 4, 30, 30), torch.randn(4, 1, 13, 13)
    for impl in ('auto', 'fft', 'dft', 'cl'):
        torch.testing.assert_close(ops.dwconv2d(x, w, None, impl), F.conv2d(x, w, None, 1, 6, 1, 4),
                                   rtol=1e-4, atol=1e-4)
    assert not any(m.split('.')[0] in ('mmengine', 'mmcv') for m in sys.modules)
    try:
        import mmlk.models
    except ImportError as e:
        assert 'mmengine' in str(e) or 'mmcv' in str(e), e  # names what is missing
    else:
        raise AssertionError('mmlk.models imported without mmengine')
    print('IMPORT-OK')
''')


GPU_CHECK_SMOKE = textwrap.dedent('''
    import importlib.abc, runpy, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in ('mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain', 'timm'):
                raise ImportError(f'{name} is blocked')
            return None
    sys.meta_path.insert(0, Block())
    sys.argv = [sys.argv[1], '--smoke', '--out', sys.argv[2]]
    runpy.run_path(sys.argv[0], run_name='__main__')
''')


@pytest.mark.slow
def test_gpu_check_smoke_runs_with_torch_and_triton_only(repo_root, tmp_path):
    """tools/analysis/gpu_check.py --smoke (CPU, TRITON_INTERPRET=1) with the OpenMMLab stack and timm blocked:
    what a bare GPU machine can run; every route, the Triton one included, is correct on the tiny shapes."""
    out = tmp_path / 'gpu_check.json'
    proc = subprocess.run([sys.executable, '-c', GPU_CHECK_SMOKE, os.path.join(repo_root, 'tools', 'analysis',
                                                                               'gpu_check.py'), str(out)],
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TRITON_INTERPRET='1', PYTHONPATH=repo_root))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res['correctness'] and all(r['ok'] for r in res['correctness'])
    assert {r['impl'] for r in res['correctness']} == {'torch', 'cl', 'triton', 'auto'}
    assert res['environment']['triton_self_check'] is True


@pytest.mark.slow
@pytest.mark.parametrize('how', ['import', 'loader'])
def test_ops_import_without_mmengine_and_mmcv(repo_root, how):
    """A bare GPU machine has torch (+ triton) only: plain `import mmlk.ops` (and the tools' loader) must work."""
    proc = subprocess.run([sys.executable, '-c', IMPORT_SCRIPT, repo_root, how], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, MMLK_DWCONV_TUNE='0'))
    assert proc.returncode == 0 and 'IMPORT-OK' in proc.stdout, proc.stderr[-3000:]


def test_tuner_bounded_and_prunes_hopeless_routes(tuning):
    # routes HOPELESS times slower than the best so far get their warm-up call only; clear losers stop
    # being sampled after two rounds; nothing is sampled more than 1 + MAX_REPS times
    timer = tuning(FakeTimer({'fwd': {'dft': 0.01, 'fft': 0.012, 'nchw_t': 0.02, 'cl_t': 0.5, 'cl': 0.6,
                                      'nchw': 0.7}}))
    x, w = _problem(cl=False, grad=False)
    got = _tune.get_tuner().measure(x, w, ('fwd',), _tune.candidates(x))
    assert got['fwd'][0] == 'dft'
    calls = {}
    for _, r in timer.calls:
        calls[r] = calls.get(r, 0) + 1
    assert all(calls.get(r, 1) == 1 for r in ('cl_t', 'cl')), calls
    # warm-up and two samples, then dropped as a clear loser (2x the lead); the native route ('nchw') is timed
    # first, so it is never judged on its cold first call alone
    assert calls['nchw_t'] == 1 + 2
    assert calls['nchw'] == 1 + 2
    assert calls['dft'] == calls['fft'] <= 1 + _tune.MAX_REPS
    # the weight gradient never times the *_t aliases of the plain aten kernels
    assert '_t' not in ''.join(_tune.pass_candidates('gw', _tune.candidates(x)))


CONFIGS_SCRIPT = textwrap.dedent('''
    import json, os, sys
    os.environ['TRITON_INTERPRET'] = '1'
    sys.path.insert(0, os.path.join(sys.argv[1], 'tools', 'analysis'))
    from ops_loader import load_ops
    load_ops(sys.argv[1])
    import torch, torch.nn.functional as F
    from mmlk.ops.routes import triton as _triton
    mod = _triton.load_kernels()
    g = torch.Generator().manual_seed(0)
    # small on purpose: the interpreter runs every program instance in Python, and a 5x6 map still has tiles
    # that straddle the border in every configuration
    x = torch.randn(1, 3, 5, 6, generator=g)
    wt = torch.randn(3, 1, 5, 3, generator=g)
    gy = torch.randn(1, 3, 5, 6, generator=g)
    ref_y = F.conv2d(x.double(), wt.double(), None, 1, (2, 1), 1, 3)
    ref_gx, ref_gw, _ = torch.ops.aten.convolution_backward(gy.double(), x.double(), wt.double(), None, [1, 1],
                                                            [2, 1], [1, 1], False, [0, 0], 3, [True, True, False])
    worst = 0.0
    for cl in (False, True):
        fmt = torch.channels_last if cl else torch.contiguous_format
        xl, gl = x.contiguous(memory_format=fmt), gy.contiguous(memory_format=fmt)
        for cfg in mod.fwd_configs():
            for got, ref in ((_triton.forward(xl, wt, config=cfg.kwargs), ref_y),
                             (_triton.input_grad(gl, wt, config=cfg.kwargs), ref_gx)):
                worst = max(worst, ((got.double() - ref).abs().max() / ref.abs().max()).item())
        for cfg in mod.wgrad_configs():
            got = _triton.weight_grad(gl, xl, wt.shape, config=cfg.kwargs)
            worst = max(worst, ((got.double() - ref_gw).abs().max() / ref_gw.abs().max()).item())
    print('WORST' + json.dumps([worst, len(mod.fwd_configs()), len(mod.wgrad_configs())]))
''')


@pytest.mark.slow
def test_triton_autotune_configs_are_correct(repo_root):
    """Every block configuration the CUDA autotuner may pick gives correct results (CPU interpreter)."""
    proc = subprocess.run([sys.executable, '-c', CONFIGS_SCRIPT, repo_root], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, TRITON_INTERPRET='1'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    worst, n_fwd, n_wgrad = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith('WORST')][-1][5:])
    assert n_fwd >= 4 and n_wgrad >= 4
    assert worst < 1e-5


def test_tuner_probe_skips_full_size_calls_of_hopeless_routes(tuning):
    """An aten route whose reduced probe predicts HOPELESS x the best is never run at full size."""
    timer = tuning(FakeTimer({'fwd': {'dft': 0.01, 'nchw': 1.0, 'cl': 0.012}}))
    x, w = _problem(cl=False, grad=False, c=32)
    fns = {r: _tune._pass_fn('fwd', r, x, w, x) for r in ('dft', 'nchw', 'cl')}
    probes = {r: (_tune._pass_fn('fwd', r, x, w, x, 32.0), 32.0) for r in ('nchw', 'cl')}
    times = _tune.get_tuner()._time_routes(fns, x.device, probes)
    assert ('fwd', 'nchw') not in timer.calls and times['nchw'] == pytest.approx(1.0)
    assert ('fwd', 'cl') in timer.calls  # predicted competitive: timed for real
    assert _tune.choose(times, 'nchw') == 'dft'


# ----------------------------------------------------------------------------------------------
# never slower by construction (issue 21): aten's passes are aten's own calls, with no extra copies
# ----------------------------------------------------------------------------------------------
from mmlk.ops import _executor  # noqa: E402


def _profiled_ops(fn):
    """Names of the aten ops ``fn`` ran (top level and nested), in order."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return [e.name for e in prof.events() if e.name.startswith('aten::')]


def _aten_reference(g, x, w, mask):
    """The call F.conv2d's autograd node (ConvolutionBackward0) makes for these gradients."""
    return lambda: _executor.aten_backward(g, x, w, mask)


def _aten_reference(g, x, w, mask):
    """The call F.conv2d's autograd node (ConvolutionBackward0) makes for these gradients."""
    return lambda: _executor.aten_backward(g, x, w, mask)


@pytest.mark.parametrize('cl', [False, True], ids=['nchw', 'cl'])
def test_all_native_routes_are_plain_conv2d_under_torch_autograd(tuning, cl):
    """When the tuner keeps F.conv2d's route for every pass, the op IS F.conv2d: its autograd node, no Function."""
    tuning(FakeTimer())  # every route equally fast: the native one is kept for every pass
    x, w = _problem(cl=cl, h=100, k=9)  # far from the shipped table's shapes: no prior prunes any route
    y = dwconv2d(x, w)
    assert dwmod._decide(x, w, 'auto', True) == (_executor.native(x),) * 3
    assert type(y.grad_fn).__name__ == 'ConvolutionBackward0'


@pytest.mark.parametrize('cl', [False, True], ids=['nchw', 'cl'])
def test_mixed_routes_run_aten_passes_as_aten_does(cl):
    """Forward and input gradient native, weight gradient Fourier: the forward runs exactly F.conv2d's aten ops,
    the input gradient exactly the one convolution_backward call aten's autograd makes (no extra kernel, copy or
    layout conversion); with both gradients native, one call for both (and the bias), as ConvolutionBackward0."""
    x, w, b, g = _data(2, 8, 14, 14, 13, 13, dtype=torch.float32)
    if cl:
        x, g = (t.contiguous(memory_format=torch.channels_last) for t in (x, g))
    nat = _executor.native(x)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    holder = {}
    fwd = _profiled_ops(lambda: holder.update(y=_executor.run(xr, wr, None, (nat, nat, 'dft'), True)))
    xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
    assert sorted(fwd) == sorted(_profiled_ops(lambda: F.conv2d(xs, ws, None, 1, 6, 1, 8)))
    gx_ops = _profiled_ops(lambda: _executor.backward(g, x, w, (nat, nat, 'dft'), True, False))
    assert sorted(gx_ops) == sorted(_profiled_ops(_aten_reference(g, x, w, (True, False, False))))
    both = _profiled_ops(lambda: _executor.backward(g, x, w, ('dft', nat, nat), True, True, True))
    assert sorted(both) == sorted(_profiled_ops(_aten_reference(g, x, w, (True, True, True))))
    assert both.count('aten::convolution_backward') == 1
    # and the numbers are aten's
    holder['y'].backward(g)
    F.conv2d(xs, ws, None, 1, 6, 1, 8).backward(g)
    assert torch.equal(xr.grad, xs.grad)
    assert _rel(wr.grad, ws.grad) < 1e-5


def test_tuner_times_the_native_route_as_aten_runs_it():
    """The candidates the tuner times for F.conv2d's route are the bare aten calls (no executor, no wrapper)."""
    x, w, _, g = _data(1, 8, 14, 14, 13, 13, dtype=torch.float32)
    with torch.no_grad():
        for p, mask in (('gx', (True, False, False)), ('gw', (False, True, False))):
            assert _profiled_ops(_tune._pass_fn(p, 'nchw', x, w, g)) == _profiled_ops(_aten_reference(g, x, w, mask))
        fwd = _profiled_ops(_tune._pass_fn('fwd', 'nchw', x, w, g))
        assert fwd == _profiled_ops(lambda: F.conv2d(x, w, None, 1, 6, 1, 8))


def test_one_backward_formula_for_eager_and_compiled_paths():
    """The eager Function and the custom op's autograd share one formula (issue 23): same gradients, bias too."""
    x, w, b, g = _data(2, 4, 9, 8, 7, 5)
    grads = []
    for call in (lambda a, c, d: _executor.EagerDWConv.apply(a, c, d, ('fft', 'dft', 'fft')),
                 lambda a, c, d: dwmod._dwconv2d_op(a, c, d, 'fft')):
        xr, wr, br = (t.clone().requires_grad_() for t in (x, w, b))
        call(xr, wr, br).backward(g)
        grads.append((xr.grad, wr.grad, br.grad))
    ref = _reference(x, w, b, g)[1:]
    for got in grads:
        for a, r in zip(got, ref):
            assert _rel(a, r) < 1e-10


def test_ops_modules_import_no_circle(repo_root):
    """The executor sits beneath the op and the tuner: neither the executor nor the tuner imports the op."""
    import ast
    def imports(name):
        tree = ast.parse(open(os.path.join(repo_root, 'mmlk', 'ops', f'{name}.py')).read())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found |= {a.name for a in node.names} if node.module is None else {node.module}
        return found
    assert 'dwconv' not in imports('_tune') and 'dwconv' not in imports('_executor')
    assert '_tune' not in imports('_executor')


# ----------------------------------------------------------------------------------------------
# symbolic sizes (issue 22, point 3) and FX then TorchScript (issue 21), on a tiny model of every family
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize('impl', ['auto', 'fft'])
def test_export_dynamic_batch_where_the_size_shortcut_would_guard(impl):
    """16 x 28 x 28 with a 7x7 kernel: 'auto''s tiny-problem threshold falls at batch 6.5, inside Dim('b', max=8);
    comparing the symbolic batch with it crashed torch.export (issue 22, point 3)."""
    from torch.export import Dim
    m = torch.nn.Sequential(LargeKernelDWConv2d(16, 7, bias=True, impl=impl)).eval()
    ep = torch.export.export(m, (torch.randn(2, 16, 28, 28),), dynamic_shapes=({0: Dim('b', max=8)},))
    for n in (1, 3, 8):
        x = torch.randn(n, 16, 28, 28)
        torch.testing.assert_close(ep.module()(x), m(x))


def _counting_backend(graphs):
    """aot_autograd with compilers that record every graph (forward and backward) and run it as traced."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    def count(gm, example_inputs):
        graphs.append(gm)
        return make_boxed_func(gm.forward)
    return aot_autograd(fw_compiler=count, bw_compiler=count)


def test_compile_dynamic_block_traces_once():
    """torch.compile(dynamic=True): one forward and one backward graph for three batch / map sizes ('auto' used
    to guard on the size comparison of its tiny-problem shortcut and recompile)."""
    torch._dynamo.reset()
    graphs = []
    m = torch.nn.Sequential(torch.nn.Conv2d(16, 16, 1), LargeKernelDWConv2d(16, 13, bias=True, impl='auto'))
    cm = torch.compile(m, dynamic=True, backend=_counting_backend(graphs))
    for shape in ((2, 16, 33, 21), (3, 16, 20, 24), (5, 16, 40, 40)):
        x = torch.randn(shape, requires_grad=True)
        y = cm(x)
        y.sum().backward()
        torch.testing.assert_close(y, m(x), rtol=1e-4, atol=1e-4)
    assert len(graphs) == 2, f'{len(graphs)} graphs: the op guarded on a size'


def _tiny_families():
    """(name, builder of a tiny merged-or-not eval model) for every registered backbone family."""
    from _helpers import REPLKNET_TINY, REPNEXT_TINY, UNIREPLKNET_TINY
    from mmlk.models import FAMILIES
    # UniRepLKNet: one 7x7 Dilated Reparam Block per stage (3 branches) keeps torch.compile's graphs small
    tiny = {'replknet': dict(REPLKNET_TINY), 'repnext': dict(REPNEXT_TINY),
            'unireplknet': dict(UNIREPLKNET_TINY, depths=[1, 1, 1, 1], kernel_sizes=[[3], [7], [7], [7]])}
    missing = [f.__name__ for f in FAMILIES if f.family not in tiny]
    assert not missing, f'give these families a tiny arch here: {missing}'
    return [(f.family, f, tiny[f.family]) for f in FAMILIES]


def _family_ids():
    try:
        return [name for name, _, _ in _tiny_families()]
    except Exception:  # noqa: BLE001 - collection without mmengine: the tests below then skip
        return []


class _Features(torch.nn.Module):
    """A backbone returning its maps as a tuple (what export and ONNX take as outputs)."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return tuple(self.backbone(x))


def _tiny_model(name, deploy=True, impl='auto'):
    fams = {n: (cls, arch) for n, cls, arch in _tiny_families()}
    cls, arch = fams[name]
    torch.manual_seed(0)
    model = cls(arch=arch, out_indices=(0, 1, 2, 3)).eval()
    for m in model.modules():
        if isinstance(m, LargeKernelDWConv2d):
            m.impl = impl
    if deploy:
        model.switch_to_deploy()
    assert any(isinstance(m, LargeKernelDWConv2d) for m in model.modules()), 'the tiny model must use the op'
    return _Features(model)


@pytest.mark.parametrize('name', _family_ids())
def test_export_with_dynamic_batch_and_spatial_dims(name):
    from torch.export import Dim
    model = _tiny_model(name)
    x = torch.randn(2, 3, 64, 64)
    dims = {0: Dim('batch', min=1, max=8), 2: 32 * Dim('h32', min=1, max=8), 3: 32 * Dim('w32', min=1, max=8)}
    ep = torch.export.export(model, (x,), dynamic_shapes=(dims,))
    assert any('mmlk.dwconv2d' in str(n.target) for n in ep.graph.nodes if n.op == 'call_function')
    for shape in ((3, 3, 96, 64), (1, 3, 64, 128)):
        xx = torch.randn(shape)
        with torch.no_grad():
            for a, b in zip(ep.module()(xx), model(xx)):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def _dynamo_counting_backend(graphs):
    """Dynamo's graphs only, run as traced (no AOT joint graph: about a fifth of the cost of aot_autograd)."""
    def count(gm, example_inputs):
        graphs.append(gm)
        return gm.forward
    return count


@pytest.mark.parametrize('name', _family_ids())
def test_compile_dynamic_traces_once_and_trains(name):
    """Every family's whole training-form model: one dynamo graph for two batch / map sizes, and it trains.

    The size guards a model can add live in its forward (the family's code and the op's fake kernel), which
    dynamo traces; the backward's are checked with aot_autograd once per op (test_compile_dynamic_block_traces_once)
    and once for a whole model (test_compile_dynamic_aot_traces_one_forward_and_one_backward_graph)."""
    torch._dynamo.reset()
    graphs = []
    model = _tiny_model(name, deploy=False).train()
    compiled = torch.compile(model, dynamic=True, backend=_dynamo_counting_backend(graphs))
    # H != W in the first call: equal example sizes would be duck-sized into one symbol (torch's choice, not the op's)
    for shape in ((2, 3, 64, 96), (3, 3, 96, 64)):
        x = torch.randn(shape)
        sum(o.float().mean() for o in compiled(x)).backward()
    assert len(graphs) == 1, f'{len(graphs)} graphs compiled: the model or the op guarded on a size'
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_compile_dynamic_aot_traces_one_forward_and_one_backward_graph():
    """A whole model through aot_autograd (forward and backward traced with symbolic sizes): one graph each.
    RepLKNet stands for the families (35-45 s each here; the op's backward is the same in all three)."""
    torch._dynamo.reset()
    graphs = []
    model = _tiny_model('replknet', deploy=False).train()
    compiled = torch.compile(model, dynamic=True, backend=_counting_backend(graphs))
    for shape in ((2, 3, 64, 96), (3, 3, 96, 64)):
        x = torch.randn(shape)
        sum(o.float().mean() for o in compiled(x)).backward()
    assert len(graphs) == 2, f'{len(graphs)} graphs compiled: the op guarded on a size'  # one forward, one backward
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize('name', _family_ids())
def test_onnx_export_with_dynamic_batch(name, tmp_path):
    pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')
    from mmlk.analysis.export import export
    model = _tiny_model(name)
    path = str(tmp_path / f'{name}.onnx')
    export(model, torch.randn(2, 3, 64, 64), path, dynamic_batch=True)
    sess = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    for n in (1, 3):
        x = torch.randn(n, 3, 64, 64)
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
        with torch.no_grad():
            ref = model(x)
        assert len(got) == len(ref)
        for a, b in zip(got, ref):
            assert a.shape == tuple(b.shape) and _rel(torch.from_numpy(a), b) < 1e-4


def _timm_fx_model(model):
    """timm's tests/test_models.py ``_create_fx_model``: torchvision's extractor with timm's leaf modules."""
    from timm.models import get_notrace_functions, get_notrace_modules
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names
    kwargs = dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions(),
                  param_shapes_constant=True)
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=kwargs)
    return create_feature_extractor(model, train_return_nodes=[train_nodes[-1]], eval_return_nodes=[eval_nodes[-1]],
                                    tracer_kwargs=kwargs)


def _timm_tiny(name):
    """Tiny timm classifiers of the classes behind replknet_31b, repnext_m0 and repnext_m0e."""
    from _helpers import REPLKNET_TINY, REPNEXT_TINY
    from mmlk.models.replknet.timm import TimmRepLKNet
    from mmlk.models.repnext.timm import TimmRepNeXt
    builders = {'replknet_31b': lambda: TimmRepLKNet(arch=dict(REPLKNET_TINY), num_classes=5),
                'repnext_m0': lambda: TimmRepNeXt(dict(REPNEXT_TINY), num_classes=5),
                'repnext_m0e': lambda: TimmRepNeXt(dict(REPNEXT_TINY, token_mixer='single'), num_classes=5)}
    return builders[name]()


@pytest.mark.parametrize('name', ['replknet_31b', 'repnext_m0', 'repnext_m0e'])
def test_fx_traced_model_scripts_and_runs(name):
    """timm's test_model_forward_fx_torchscript: trace with timm's FX helpers, script, run; equal to eager."""
    timm = pytest.importorskip('timm')
    with timm.layers.set_scriptable(True):
        model = _timm_tiny(name).eval()
    scripted = torch.jit.script(_timm_fx_model(model))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = torch.cat(tuple(scripted(x).values()))
        ref = model(x)
    assert out.shape == (2, 5) and not torch.isnan(out).any()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('name', ['replknet_31b', 'repnext_m0'])
def test_fx_feature_extractor_scripts_and_runs(name):
    """timm's FX feature path (``timm.models.FeatureGraphNet``, what features_only with feature_cls='fx' builds)
    traced, scripted and run: the maps equal the eager ones."""
    timm = pytest.importorskip('timm')
    from timm.models import FeatureGraphNet
    with timm.layers.set_scriptable(True):
        model = _timm_tiny(name).eval()
    feats = FeatureGraphNet(model, out_indices=(1, 3)).eval()
    scripted = torch.jit.script(feats)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(scripted(x), feats(x)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_tuner_always_times_the_native_route_whatever_the_shipped_table_says():
    """The shipped table was measured on another machine: where it found the input's own layout (F.conv2d's
    route) hopeless, the tuner must still time it, or it picks a route slower than F.conv2d on this machine
    (seen on an AVX-512 CPU: UniRepLKNet-S stage 3, NCHW forward, the table's AVX2 times dropped 'nchw' and
    the op ran at 0.5x of F.conv2d)."""
    from mmlk.ops import _tune
    prior = {'cl': 1e-3, 'nchw': 1.0, 'fft': 2e-3}  # native 'nchw' 1000x the best: beyond HOPELESS
    order = _tune.Tuner._order(['cl', 'nchw', 'fft'], prior, 'nchw')
    # first, so that its cold first call is its warm-up and not judged against a faster route timed before it
    assert order == ['nchw', 'cl', 'fft']
    # another route the table found hopeless is still dropped
    assert _tune.Tuner._order(['cl', 'nchw', 'fft', 'dft'], {**prior, 'dft': 1.0}, 'nchw').count('dft') == 0
