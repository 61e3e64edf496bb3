"""Benchmark mmlk's large-kernel depthwise convolution against ``F.conv2d`` (NCHW and channels_last).

Modes:

* default: per-pass table, mmlk's op against ``F.conv2d`` with inputs in the SAME layout and dtype (``--layout``,
  ``--dtype``), with the routes 'auto' chose and the one-time tuning cost of each problem (cold cache: a fresh,
  empty tuning cache unless ``--warm-cache``); the summary lists every pass below 0.95x whose baseline takes at
  least 0.3 ms. ``--profile`` adds, for every pass that runs F.conv2d's own route, whether ours ran exactly
  F.conv2d's aten ops (torch.profiler: no extra kernel, copy or layout conversion), a check that timing noise
  cannot blur.
* ``--best-layout``: the older per-pass table (forward, input gradient, weight gradient, and forward+backward through autograd)
  for the RepLKNet-31B stage shapes at 224 input and RepNeXt-M3's 7x7 / 1x11 / 11x1 / 11x11 shapes, at
  batch 1 and 8. Every timing is a median over ``--repeats`` samples, with all candidates of a pass timed
  round-robin inside each sample so that load from other processes hits them alike. The speedup column is
  ``best torch layout / ours`` (> 1 means mmlk is faster).
* ``--write-table``: times every route of every pass on a grid of shapes and writes the CPU crossover table
  ``mmlk/ops/dwconv_cpu_table.json`` that ``impl='auto'`` reads.
* ``--model``: RepLKNet-31B, RepNeXt-M3 and UniRepLKNet-T, merged inference and one training step (SGD), with the backbones'
  large-kernel implementation 'auto' vs 'torch'.

Examples::

    python tools/analysis/benchmark_dwconv.py --only replknet --dtype float32 bfloat16 --threads 2 --repeats 7
    python tools/analysis/benchmark_dwconv.py --only unireplknet --shape 'UniT s4' --batch 1 --repeats 5
    python tools/analysis/benchmark_dwconv.py --profile --repeats 0   # structural check only: same aten ops
    python tools/analysis/benchmark_dwconv.py --best-layout --threads 2 --repeats 7
    python tools/analysis/benchmark_dwconv.py --write-table --threads 2
    python tools/analysis/benchmark_dwconv.py --model --channels-last --model-batch 1 2 --threads 2
    python tools/analysis/benchmark_dwconv.py --model --channels-last --amp bfloat16 --threads 2
    python tools/analysis/benchmark_dwconv.py --device cuda
"""
import argparse
import json
import os
import os.path as osp
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

# OpenMP threads that spin while waiting collapse (10-50x slower parallel regions) when the cores are
# shared with other processes; passive waiting keeps both torch and mmlk timings meaningful there. It has
# to be set before torch initialises OpenMP; an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import torch  # noqa: E402
import torch.nn.functional as F

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from ops_loader import load_ops  # noqa: E402  (tools/analysis; works without mmengine)

load_ops()
from mmlk.ops import _dispatch, _executor, _tune, dwconv, route_table  # noqa: E402
from mmlk.ops.dwconv import dwconv2d  # noqa: E402

# (label, C, H, W, kh, kw)
REPLKNET_31B = [('31B s1', 128, 56, 56, 31, 31), ('31B s2', 256, 28, 28, 29, 29),
                ('31B s3', 512, 14, 14, 27, 27), ('31B s4', 1024, 7, 7, 13, 13)]
# RepNeXt-M3 (dims 64/128/256/512, ChunkConv gives each branch C/4 channels): merged 7x7 conv_m and the
# unmerged 1x11 / 11x1 conv_l, plus an 11x11 for a merged conv_l.
REPNEXT_M3 = [('M3 s1 7x7', 16, 56, 56, 7, 7), ('M3 s2 7x7', 32, 28, 28, 7, 7), ('M3 s3 7x7', 64, 14, 14, 7, 7),
              ('M3 s4 7x7', 128, 7, 7, 7, 7), ('M3 s1 1x11', 16, 56, 56, 1, 11), ('M3 s1 11x1', 16, 56, 56, 11, 1),
              ('M3 s3 1x11', 64, 14, 14, 1, 11), ('M3 s2 11x11', 32, 28, 28, 11, 11)]
# UniRepLKNet (Ding et al., CVPR 2024): 13x13 depthwise kernels (Dilated Reparam Block, merged) at strides
# 4 / 8 / 16 / 32 of a 224 input; T dims 80-640, S dims 96-768 (stage 1 is 3x3 in the default kernel tables,
# kept here for configurations that give it a 13x13 kernel).
def _stages(label: str, dims: Sequence[int], maps: Sequence[int] = (56, 28, 14, 7), k: int = 13) -> list:
    return [(f'{label} s{i + 1}', c, m, m, k, k) for i, (c, m) in enumerate(zip(dims, maps))]


UNIREPLKNET_T = _stages('UniT', (80, 160, 320, 640))
UNIREPLKNET_S = _stages('UniS', (96, 192, 384, 768))
# --only choices: one list of (label, C, H, W, kh, kw) per model family; add a family by adding an entry
SHAPES = {'replknet': REPLKNET_31B, 'repnext': REPNEXT_M3, 'unireplknet': UNIREPLKNET_T + UNIREPLKNET_S}
PASS_NAMES = {'fwd': 'forward', 'gx': 'input grad', 'gw': 'weight grad', 'fb': 'fwd+bwd'}


# ----------------------------------------------------------------------------------------------
# timing helpers
# ----------------------------------------------------------------------------------------------
class Timer:
    """Wall-clock (CPU) or CUDA-event timing of a callable, several calls per sample for fast ones."""

    def __init__(self, device: str) -> None:
        self.device = device

    def sync(self) -> None:
        if self.device == 'cuda':
            torch.cuda.synchronize()

    def once(self, fn: Callable[[], object], inner: int = 1) -> float:
        if self.device == 'cuda':
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1e3 / inner
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        return (time.perf_counter() - t0) / inner


def race(timer: Timer, fns: Dict[str, Callable[[], object]], repeats: int, min_sample: float = 0.02,
         give_up: float = 4.0, slow: float = 0.5) -> Dict[str, float]:
    """Median seconds per call of each candidate, timed round-robin (forward order, then reversed, alternating).

    A candidate whose first timing is more than ``give_up`` times the fastest first timing keeps that
    one sample (it cannot win, and the slow aten kernels take seconds per call); a warm-up call longer than
    ``slow`` seconds is itself kept as a sample.
    """
    first: Dict[str, float] = {}
    inner: Dict[str, int] = {}
    samples: Dict[str, List[float]] = {k: [] for k in fns}
    for name, fn in fns.items():
        t = timer.once(fn)  # warm-up: allocations, FFT plans, Triton compilation
        if t > slow:
            # a call this long is dominated by the work itself: it counts as the first sample
            samples[name].append(t)
        else:
            t = timer.once(fn)
        first[name] = t
        inner[name] = max(1, min(200, int(min_sample / max(t, 1e-7))))
    fastest = min(first.values())
    names = list(fns)
    for r in range(repeats):
        # the order alternates every round: the candidate timed first (caches, clock ramp) is not always the same
        for name in (names if r % 2 == 0 else names[::-1]):
            fn = fns[name]
            if len(samples[name]) >= 1 and first[name] > give_up * fastest:
                continue
            if len(samples[name]) >= repeats:
                continue
            samples[name].append(timer.once(fn, inner[name]))
    return {k: statistics.median(v) for k, v in samples.items()}


def _make(shape: Tuple[int, int, int, int], kh: int, kw: int, device: str, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g).to(device=device, dtype=dtype)
    w = (torch.randn(shape[1], 1, kh, kw, generator=g) / (kh * kw) ** 0.5).to(device=device, dtype=dtype)
    gy = torch.randn(shape, generator=g).to(device=device, dtype=dtype)
    return x, w, gy


def _aten_bwd(gy, x, w, mask):
    kh, kw = w.shape[-2:]
    return torch.ops.aten.convolution_backward(gy, x, w, None, [1, 1], [kh // 2, kw // 2], [1, 1], False, [0, 0],
                                               x.shape[1], mask)


def _fwd_bwd(fn, x, w, gy):
    def run():
        xr = x.detach().requires_grad_()
        wr = w.detach().requires_grad_()
        fn(xr, wr).backward(gy)
    return run


def torch_candidates(x, w, gy) -> Dict[str, Dict[str, Callable]]:
    """F.conv2d and its backward kernels in both layouts, inputs already in that layout (no conversion)."""
    kh, kw = w.shape[-2:]
    out: Dict[str, Dict[str, Callable]] = {p: {} for p in PASS_NAMES}
    for lay, fmt in (('nchw', torch.contiguous_format), ('cl', torch.channels_last)):
        xl, gl = x.contiguous(memory_format=fmt), gy.contiguous(memory_format=fmt)
        out['fwd'][f'torch_{lay}'] = lambda xl=xl: F.conv2d(xl, w, None, 1, (kh // 2, kw // 2), 1, xl.shape[1])
        out['gx'][f'torch_{lay}'] = lambda xl=xl, gl=gl: _aten_bwd(gl, xl, w, [True, False, False])
        out['gw'][f'torch_{lay}'] = lambda xl=xl, gl=gl: _aten_bwd(gl, xl, w, [False, True, False])
        out['fb'][f'torch_{lay}'] = _fwd_bwd(
            lambda a, b: F.conv2d(a, b, None, 1, (kh // 2, kw // 2), 1, a.shape[1]), xl, w, gl)
    return out


def ours_candidates(x, w, gy, impl: str = 'auto') -> Dict[str, Dict[str, Callable]]:
    """mmlk's op on NCHW and on channels_last inputs (conversions it chooses are inside the timing).

    The input and weight gradients are timed alone through the executors the eager autograd path uses.
    """
    out: Dict[str, Dict[str, Callable]] = {p: {} for p in PASS_NAMES}
    for lay, fmt in (('nchw', torch.contiguous_format), ('cl', torch.channels_last)):
        xl, gl = x.contiguous(memory_format=fmt), gy.contiguous(memory_format=fmt)
        routes = dwconv._routes(xl, w, impl)
        out['fwd'][f'ours_{lay}'] = lambda xl=xl: dwconv2d(xl, w, None, impl)
        out['fb'][f'ours_{lay}'] = _fwd_bwd(lambda a, b: dwconv2d(a, b, None, impl), xl, w, gl)
        if routes == (lay, lay, lay) and w.device.type == 'cpu':
            # eager dwconv2d is then plain F.conv2d, and autograd calls aten's backward directly
            out['gx'][f'ours_{lay}'] = lambda xl=xl, gl=gl: _aten_bwd(gl, xl, w, [True, False, False])
            out['gw'][f'ours_{lay}'] = lambda xl=xl, gl=gl: _aten_bwd(gl, xl, w, [False, True, False])
            continue
        out['gx'][f'ours_{lay}'] = lambda xl=xl, gl=gl, r=routes: _executor.backward(gl, xl, w, r, True, False)
        out['gw'][f'ours_{lay}'] = lambda xl=xl, gl=gl, r=routes: _executor.backward(gl, xl, w, r, False, True)
    return out


# ----------------------------------------------------------------------------------------------
# per-pass benchmark
# ----------------------------------------------------------------------------------------------
def bench_shapes(shapes, batches: Sequence[int], device: str, dtype: torch.dtype, repeats: int,
                 impl: str) -> List[dict]:
    timer = Timer(device)
    rows = []
    for n in batches:
        for label, c, h, w_, kh, kw in shapes:
            x, w, gy = _make((n, c, h, w_), kh, kw, device, dtype)
            tc = torch_candidates(x, w, gy)
            oc = ours_candidates(x, w, gy, impl)
            routes = {lay: dwconv._routes(x.contiguous(memory_format=fmt), w, impl) for lay, fmt in
                      (('nchw', torch.contiguous_format), ('cl', torch.channels_last))}
            row = dict(label=label, n=n, c=c, h=h, w=w_, kh=kh, kw=kw)
            for p in PASS_NAMES:
                times = race(timer, {**tc[p], **oc[p]}, repeats)
                best = min(times['torch_nchw'], times['torch_cl'])
                lay = min(('nchw', 'cl'), key=lambda k: times[f'ours_{k}'])
                ours = times[f'ours_{lay}']
                row[p] = dict(nchw=times['torch_nchw'], cl=times['torch_cl'], ours=ours, ours_layout=lay,
                              ours_nchw=times['ours_nchw'], ours_cl=times['ours_cl'], speedup=best / ours,
                              route=routes[lay][{'fwd': 0, 'gx': 1, 'gw': 2}.get(p, 0)] if p != 'fb' else
                              '/'.join(routes[lay]))
            rows.append(row)
            print(_format_row(row), flush=True)
    return rows


def _format_header() -> str:
    cols = ' | '.join(f'{PASS_NAMES[p]}: nchw / cl / ours ms (x) [route]' for p in PASS_NAMES)
    return f'| shape | N | {cols} |\n|' + '---|' * (2 + len(PASS_NAMES))


def _format_row(r: dict) -> str:
    cells = []
    for p in PASS_NAMES:
        d = r[p]
        cells.append(f"{d['nchw'] * 1e3:.2f} / {d['cl'] * 1e3:.2f} / {d['ours'] * 1e3:.2f} "
                     f"({d['speedup']:.2f}x) [{d['ours_layout']}:{d['route']}]")
    shape = f"{r['label']} ({r['c']},{r['h']},{r['w']},{r['kh']}x{r['kw']})"
    return f"| {shape} | {r['n']} | " + ' | '.join(cells) + ' |'


def summarize(rows: List[dict]) -> str:
    lines = []
    for n in sorted({r['n'] for r in rows}):
        sel = [r for r in rows if r['n'] == n and r['label'].startswith('31B')]
        if len(sel) == 4:
            ours = sum(r[p]['ours'] for r in sel for p in ('fwd', 'gx', 'gw'))
            best = sum(min(r[p]['nchw'], r[p]['cl']) for r in sel for p in ('fwd', 'gx', 'gw'))
            lines.append(f'31B stages, batch {n}, sum of fwd+gx+gw: best torch {best * 1e3:.1f} ms, '
                         f'ours {ours * 1e3:.1f} ms, speedup {best / ours:.2f}x')
    k31 = [r for r in rows if r['kh'] == 31 and r['h'] == 56]
    for r in k31:
        lines.append(f"K31@56 weight grad, batch {r['n']}: speedup {r['gw']['speedup']:.1f}x")
    worst = min(((r[p]['speedup'], r['label'], r['n'], p) for r in rows for p in PASS_NAMES))
    lines.append(f'slowest pass relative to best torch: {worst[0]:.2f}x ({worst[1]}, batch {worst[2]}, '
                 f'{PASS_NAMES[worst[3]]})')
    return '\n'.join(lines)


# ----------------------------------------------------------------------------------------------
# same-layout benchmark (the issue #12 targets): ours vs F.conv2d in the input's own layout and dtype
# ----------------------------------------------------------------------------------------------
def same_layout_candidates(x, w, gy, routes: Tuple[str, str, str], impl: str):
    """Per pass, F.conv2d's call (what PyTorch's autograd runs) and mmlk's (what the op runs for ``routes``).

    Ours: the forward is the public op without autograd (inference); the gradients are the op's one backward
    executor with the decided routes, or aten's own call when every route is aten's (the op is then plain
    F.conv2d under PyTorch's autograd); ``fb`` is a whole forward + backward through autograd for both.
    """
    kh, kw = w.shape[-2:]
    c = x.shape[1]
    pad = (kh // 2, kw // 2)
    tc = {'fwd': lambda: F.conv2d(x, w, None, 1, pad, 1, c),
          'gx': lambda: _aten_bwd(gy, x, w, [True, False, False]),
          'gw': lambda: _aten_bwd(gy, x, w, [False, True, False]),
          'fb': _fwd_bwd(lambda a, b: F.conv2d(a, b, None, 1, pad, 1, c), x, w, gy)}
    if routes == (_executor.native(x),) * 3:
        ogx, ogw = tc['gx'], tc['gw']
    else:
        ogx = lambda: _executor.backward(gy, x, w, routes, True, False)  # noqa: E731
        ogw = lambda: _executor.backward(gy, x, w, routes, False, True)  # noqa: E731
    oc = {'fwd': lambda: dwconv2d(x, w, None, impl), 'gx': ogx, 'gw': ogw,
          'fb': _fwd_bwd(lambda a, b: dwconv2d(a, b, None, impl), x, w, gy)}
    return tc, oc


def _pass_routes(routes: Tuple[str, str, str], p: str) -> Tuple[str, ...]:
    return routes if p == 'fb' else (routes[{'fwd': 0, 'gx': 1, 'gw': 2}[p]],)


def _aten_ops(fn: Callable[[], object]) -> List[str]:
    """The aten ops one call of ``fn`` runs (profiler events, nested ones included), in order."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return [e.name for e in prof.events() if e.name.startswith('aten::')]


def same_kernels(torch_fn, ours_fn, routes: Sequence[str], layout: str) -> str:
    """Where every route of the pass is aten's in the input's layout: 'same' when ours ran exactly the aten ops
    F.conv2d's call ran (same kernels, no extra copy or conversion), else what differs; other routes: 'route'."""
    if any(r != layout for r in routes):
        return 'route'
    if torch.is_grad_enabled():
        theirs, ours = sorted(_aten_ops(torch_fn)), sorted(_aten_ops(ours_fn))
    else:  # pragma: no cover - the benchmark runs with grad enabled
        return 'unknown'
    if theirs == ours:
        return 'same'
    extra = sorted(set(ours) - set(theirs)) or [f'{k} x{ours.count(k)}' for k in sorted(set(ours))
                                                if ours.count(k) != theirs.count(k)]
    return 'DIFF: ' + ', '.join(extra)


def bench_same_layout(shapes, batches: Sequence[int], device: str, dtypes: Sequence[torch.dtype],
                      layouts: Sequence[str], repeats: int, impl: str, profile: bool = False) -> List[dict]:
    """Per pass, mmlk's op against F.conv2d with inputs in the same layout and dtype.

    Before a problem is timed its routes are decided with an autograd call (what a training step's first
    iteration does); with tuning on and the cache cold that call times the routes, and its cost is reported in
    the ``tune ms`` column (the one-time cost per problem and machine).
    """
    timer = Timer(device)
    tuner = _tune.get_tuner()
    rows = []
    for dtype in dtypes:
        for lay in layouts:
            fmt = torch.channels_last if lay == 'cl' else torch.contiguous_format
            for n in batches:
                for label, c, h, w_, kh, kw in shapes:
                    x, w, gy = _make((n, c, h, w_), kh, kw, device, dtype)
                    x, gy = x.contiguous(memory_format=fmt), gy.contiguous(memory_format=fmt)
                    before = tuner.tuning_seconds
                    t0 = time.perf_counter()
                    xr, wr = x.detach().requires_grad_(), w.detach().requires_grad_()
                    dwconv2d(xr, wr, None, impl)  # decides (and, cold, tunes) the routes of all three passes
                    tune_s = tuner.tuning_seconds - before
                    first_s = time.perf_counter() - t0
                    routes = dwconv._decide(xr, wr, impl, True) or (lay, lay, lay)
                    tc, oc = same_layout_candidates(x, w, gy, routes, impl)
                    row = dict(label=label, n=n, c=c, h=h, w=w_, kh=kh, kw=kw, dtype=str(dtype).replace('torch.', ''),
                               layout=lay, routes='/'.join(routes), tune_ms=tune_s * 1e3, first_ms=first_s * 1e3)
                    for p in PASS_NAMES:
                        if repeats > 0:
                            t = race(timer, {'torch': tc[p], 'ours': oc[p]}, repeats)
                            row[p] = dict(torch=t['torch'], ours=t['ours'], ratio=t['torch'] / t['ours'])
                        else:
                            row[p] = dict(torch=float('nan'), ours=float('nan'), ratio=float('nan'))
                        if profile:
                            row[p]['kernels'] = same_kernels(tc[p], oc[p], _pass_routes(routes, p), lay)
                    rows.append(row)
                    print(_format_same_row(row), flush=True)
    return rows


def _format_same_header() -> str:
    cols = ' | '.join(f'{PASS_NAMES[p]} torch / ours ms (x)' for p in PASS_NAMES)
    return f'| dtype | layout | shape | N | routes | {cols} | tune ms |\n|' + '---|' * (6 + len(PASS_NAMES))


def _format_same_row(r: dict) -> str:
    marks = {'same': ' =aten', 'route': ''}
    cells = [f"{r[p]['torch'] * 1e3:.2f} / {r[p]['ours'] * 1e3:.2f} ({r[p]['ratio']:.2f}x)"
             + (marks.get(r[p]['kernels'], ' ' + r[p]['kernels']) if 'kernels' in r[p] else '') for p in PASS_NAMES]
    shape = f"{r['label']} ({r['c']},{r['h']},{r['w']},{r['kh']}x{r['kw']})"
    return (f"| {r['dtype']} | {r['layout']} | {shape} | {r['n']} | {r['routes']} | " + ' | '.join(cells)
            + f" | {r['tune_ms']:.0f} |")


def summarize_same(rows: List[dict], floor: float = 0.95, min_base: float = 3e-4) -> str:
    lines = []
    def same_kernel(r: dict, p: str) -> bool:
        # ours ran F.conv2d's own kernel for this pass: a ratio below 1 is timing noise plus dispatch overhead
        routes = r['routes'].split('/')
        chosen = routes if p == 'fb' else [routes[{'fwd': 0, 'gx': 1, 'gw': 2}[p]]]
        return all(c == r['layout'] for c in chosen)

    profiled = [(r, p) for r in rows for p in PASS_NAMES if r[p].get('kernels', 'route') != 'route']
    if profiled:
        diff = [(r['dtype'], r['layout'], r['label'], r['n'], PASS_NAMES[p], r[p]['kernels']) for r, p in profiled
                if r[p]['kernels'] != 'same']
        lines.append(f'passes on F.conv2d\'s own route: {len(profiled)}; running exactly its aten ops (profiler): '
                     f'{len(profiled) - len(diff)}' + (f'; DIFFERENT: {diff}' if diff else ''))
    rows = [r for r in rows if all(r[p]['torch'] == r[p]['torch'] for p in PASS_NAMES)]  # timed ones (not NaN)
    if not rows:
        return '\n'.join(lines + ['(not timed: --repeats 0)'])
    bad = [(round(r[p]['ratio'], 2), r['dtype'], r['layout'], r['label'], r['n'], PASS_NAMES[p],
            'same kernel as torch' if same_kernel(r, p) else 'other route') for r in rows
           for p in PASS_NAMES if r[p]['torch'] >= min_base and r[p]['ratio'] < floor]
    checked = sum(1 for r in rows for p in PASS_NAMES if r[p]['torch'] >= min_base)
    worst = min(((r[p]['ratio'], r['dtype'], r['layout'], r['label'], r['n'], PASS_NAMES[p]) for r in rows
                 for p in PASS_NAMES if r[p]['torch'] >= min_base), default=None)
    lines.append(f'passes with baseline >= {min_base * 1e3:.1f} ms: {checked}; below {floor}x: {len(bad)}'
                 + (f' {bad}' if bad else ''))
    if worst:
        lines.append(f'lowest ratio: {worst[0]:.2f}x ({", ".join(map(str, worst[1:]))})')
    lines.append(f'one-time tuning cost (cold cache), all problems above: {sum(r["tune_ms"] for r in rows):.0f} ms '
                 f'(largest {max(r["tune_ms"] for r in rows):.0f} ms)')
    return '\n'.join(lines)


# ----------------------------------------------------------------------------------------------
# crossover table
# ----------------------------------------------------------------------------------------------
TABLE_KERNELS = [(5, 5), (7, 7), (11, 11), (13, 13), (17, 17), (21, 21), (27, 27), (31, 31), (1, 11), (11, 1),
                 (1, 7), (7, 1)]
TABLE_MAPS = [7, 14, 28, 56]
TABLE_C = 64


def table_shapes(batches: Sequence[int]) -> List[Tuple[int, int, int, int, int, int]]:
    """(N, C, H, W, kh, kw): the benchmark shapes themselves plus a grid at C=64."""
    out = []
    for n in batches:
        for _, c, h, w, kh, kw in REPLKNET_31B + REPNEXT_M3:
            out.append((n, c, h, w, kh, kw))
        for kh, kw in TABLE_KERNELS:
            for m in TABLE_MAPS:
                out.append((n, TABLE_C, m, m, kh, kw))
    seen, uniq = set(), []
    for s in out:
        if s not in seen:
            seen.add(s)
            uniq.append(s)
    return uniq


def route_candidates(x, w, gy) -> Dict[str, Dict[str, Callable]]:
    # every CPU route of the registry, for each pass it implements
    fwd = {r: (lambda r=r: route_table.run_forward(x, w, r)) for r in route_table.names('cpu', 'fwd')}
    gx = {r: (lambda r=r: route_table.run_input_grad(gy, w, r)) for r in route_table.names('cpu', 'gx')}
    gw = {r: (lambda r=r: route_table.run_weight_grad(gy, x, w, r)) for r in route_table.names('cpu', 'gw')}
    return {'fwd': fwd, 'gx': gx, 'gw': gw}


def write_table(path: str, batches: Sequence[int], repeats: int, threads: int, command: str) -> None:
    timer = Timer('cpu')
    entries = []
    shapes = table_shapes(batches)
    layouts = (('nchw', torch.contiguous_format), ('cl', torch.channels_last))
    for i, (n, c, h, w_, kh, kw) in enumerate(shapes):
        x, w, gy = _make((n, c, h, w_), kh, kw, 'cpu', torch.float32)
        entry = dict(n=n, c=c, h=h, w=w_, kh=kh, kw=kw, times={}, route={})
        for lay, fmt in layouts:
            xl, gl = x.contiguous(memory_format=fmt), gy.contiguous(memory_format=fmt)
            entry['times'][lay], entry['route'][lay] = {}, {}
            for p, fns in route_candidates(xl, w, gl).items():
                times = race(timer, fns, repeats)
                entry['times'][lay][p] = {k: round(v, 7) for k, v in times.items()}
                entry['route'][lay][p] = _dispatch.best_route(times, native=lay)
        entries.append(entry)
        _dump_table(path, entries, command, threads, done=i + 1 == len(shapes))
        print(f"[{i + 1}/{len(shapes)}] N={n} C={c} {h}x{w_} k={kh}x{kw}: "
              + '; '.join(f"{lay}: " + ','.join(entry['route'][lay][p] for p in _dispatch.PASSES)
                          for lay, _ in layouts), flush=True)
    print(f'wrote {len(entries)} entries to {path}')


def reselect_table(path: str) -> None:
    with open(path) as f:
        data = json.load(f)
    changed = 0
    for e in data['entries']:
        for lay, passes in e['times'].items():
            for p, times in passes.items():
                new = _dispatch.best_route(times, native=lay)
                changed += new != e['route'][lay][p]
                e['route'][lay][p] = new
    data['meta']['reselected'] = dict(margin=_dispatch.MARGIN, min_gain=_dispatch.MIN_GAIN,
                                      date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))
    with open(path + '.tmp', 'w') as f:
        json.dump(data, f, indent=1)
        f.write('\n')
    os.replace(path + '.tmp', path)
    print(f'{changed} route choices changed in {path}')


def _dump_table(path: str, entries: List[dict], command: str, threads: int, done: bool) -> None:
    """Write the table after every entry, so that an interrupted run still leaves a usable (partial) one."""
    meta = dict(command=command, torch=torch.__version__, threads=threads, machine=platform.machine(),
                processor=_cpu_name(), date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
                omp_wait_policy=os.environ.get('OMP_WAIT_POLICY'), complete=done,
                note='times[layout][pass][route]: median seconds per call, fp32, inputs in that layout; '
                     'route[layout][pass]: the fastest route if it beats F.conv2d in that layout by the '
                     'dispatch margin, else F.conv2d in that layout')
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(dict(meta=meta, entries=entries), f, indent=1)
        f.write('\n')
    os.replace(tmp, path)


def _cpu_name() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# ----------------------------------------------------------------------------------------------
# model-level benchmark
# ----------------------------------------------------------------------------------------------
def _set_lk_impl(model: torch.nn.Module, impl: str) -> int:
    from mmlk.ops import LargeKernelDWConv2d
    count = 0
    for m in model.modules():
        if isinstance(m, LargeKernelDWConv2d):
            m.impl = impl
            count += 1
    return count


def bench_models(device: str, repeats: int, batch_infer: int, batch_train: int, size: int,
                 channels_last: bool, amp: Optional[str] = None) -> None:
    """Merged inference and one SGD training step, large kernels 'torch' vs 'auto' (optionally under autocast).

    Each candidate runs once untimed first: for 'auto' that call tunes the model's problems (cold cache), and
    its cost is printed separately.
    """
    from mmlk.models.replknet.model import RepLKNet
    from mmlk.models.repnext.model import RepNeXt
    from mmlk.models.unireplknet.model import UniRepLKNet
    timer = Timer(device)
    tuner = _tune.get_tuner()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    amp_dtype = getattr(torch, amp) if amp else None

    def autocast():
        return torch.autocast(device, dtype=amp_dtype, enabled=amp_dtype is not None)

    specs = [('RepLKNet-31B', lambda: RepLKNet(arch='31B')), ('RepNeXt-M3', lambda: RepNeXt(arch='m3')),
             ('UniRepLKNet-T', lambda: UniRepLKNet(arch='t'))]
    print(f'# layout {"channels_last" if channels_last else "NCHW"}, autocast {amp or "off"}')
    print('| model | mode | batch | torch ms | auto ms | speedup | one-time tuning s |\n|---|---|---|---|---|---|---|')
    for name, build in specs:
        torch.manual_seed(0)
        model = build().to(device).to(memory_format=fmt)
        # inference, merged
        infer = build().to(device).to(memory_format=fmt).eval()
        infer.load_state_dict(model.state_dict())
        infer.switch_to_deploy()
        x = torch.randn(batch_infer, 3, size, size, device=device).contiguous(memory_format=fmt)
        fns = {}
        for impl in ('torch', 'auto'):
            def run_infer(impl=impl):
                _set_lk_impl(infer, impl)
                with torch.no_grad(), autocast():
                    infer(x)
            fns[impl] = run_infer
        before = tuner.tuning_seconds
        for fn in fns.values():
            fn()  # warm-up (and, for 'auto', tuning)
        tuned = tuner.tuning_seconds - before
        t = race(timer, fns, repeats, min_sample=0.0)
        print(f"| {name} | merged inference | {batch_infer} | {t['torch'] * 1e3:.1f} | {t['auto'] * 1e3:.1f} | "
              f"{t['torch'] / t['auto']:.2f}x | {tuned:.2f} |", flush=True)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-4)
        xt = torch.randn(batch_train, 3, size, size, device=device).contiguous(memory_format=fmt)
        fns = {}
        for impl in ('torch', 'auto'):
            def run_step(impl=impl):
                _set_lk_impl(model, impl)
                opt.zero_grad(set_to_none=True)
                with autocast():
                    out = model(xt)
                    out = out if isinstance(out, (tuple, list)) else (out, )
                    loss = sum(o.float().mean() for o in out)
                loss.backward()
                opt.step()
            fns[impl] = run_step
        before = tuner.tuning_seconds
        for fn in fns.values():
            fn()
        tuned = tuner.tuning_seconds - before
        t = race(timer, fns, repeats, min_sample=0.0)
        print(f"| {name} | training step | {batch_train} | {t['torch'] * 1e3:.1f} | {t['auto'] * 1e3:.1f} | "
              f"{t['torch'] / t['auto']:.2f}x | {tuned:.2f} |", flush=True)


# ----------------------------------------------------------------------------------------------
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    p.add_argument('--threads', type=int, default=2, help='torch.set_num_threads on CPU (default 2)')
    p.add_argument('--repeats', type=int, default=5, help='samples per median (default 5)')
    p.add_argument('--batch', type=int, nargs='+', default=[1, 8])
    p.add_argument('--dtype', nargs='+', default=['float32'], choices=['float32', 'float16', 'bfloat16'])
    p.add_argument('--layout', nargs='+', default=['nchw', 'cl'], choices=['nchw', 'cl'],
                   help='same-layout mode: input layouts to time (default both)')
    p.add_argument('--best-layout', action='store_true',
                   help='the older per-pass table: ours in its better layout vs the better torch layout')
    p.add_argument('--warm-cache', action='store_true',
                   help="keep the user's tuning cache (default: a fresh, empty one, so tuning cost is measured)")
    p.add_argument('--impl', default='auto', help="mmlk impl to time (default 'auto')")
    p.add_argument('--only', nargs='+', choices=sorted(SHAPES), help='restrict the shape list to these families')
    p.add_argument('--shape', nargs='+', help='restrict further to shapes whose label contains one of these '
                                              "(e.g. '31B s3' 'UniT s4')")
    p.add_argument('--profile', action='store_true',
                   help="same-layout mode: per pass on F.conv2d's own route, check with torch.profiler that ours "
                        'runs exactly the aten ops of F.conv2d (no extra kernel, copy or layout conversion); '
                        'with --repeats 0 only this check, no timing (meaningful on a loaded machine)')
    p.add_argument('--write-table', action='store_true', help='measure all CPU routes and write the table')
    p.add_argument('--table-path', default=_dispatch.TABLE_PATH)
    p.add_argument('--reselect', action='store_true',
                   help='re-apply the current dispatch rule (margin, minimum gain) to the medians already stored '
                        'in the table, without measuring again')
    p.add_argument('--model', action='store_true', help='model-level benchmark (RepLKNet-31B, RepNeXt-M3, UniRepLKNet-T)')
    p.add_argument('--model-batch', type=int, nargs=2, default=[1, 2], metavar=('INFER', 'TRAIN'))
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--channels-last', action='store_true',
                   help='model mode: run the models in channels_last (default NCHW, the layout users get)')
    p.add_argument('--amp', choices=['bfloat16', 'float16'], help='model mode: run the models under autocast')
    p.add_argument('--json', help='also dump the per-pass rows to this JSON file')
    p.add_argument('--plot', help='same-layout mode: also draw the F.conv2d / ours ratio per shape and pass to '
                   'this PNG (matplotlib), titled with the command and the machine')
    return p.parse_args(argv)


def plot_same(rows: list, path: str, title: str) -> None:
    """Bar chart of F.conv2d time / mmlk time per problem (shape, batch, dtype, layout) and pass."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    passes = [p for p in PASS_NAMES if any(p in r for r in rows)]
    labels = [f"{r['label']} n{r['n']} {r['layout']} {r['dtype']}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(rows) * len(passes) / 2), 4.2))
    width = 0.8 / max(1, len(passes))
    for i, p in enumerate(passes):
        xs = [j + (i - (len(passes) - 1) / 2) * width for j in range(len(rows))]
        ax.bar(xs, [r[p]['ratio'] for r in rows], width, label=PASS_NAMES[p])
    ax.axhline(1.0, color='black', linewidth=0.8)
    ax.set_yscale('log')  # ratios span 0.9x .. 100x
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, rotation=35, ha='right', fontsize=7)
    ax.set_ylabel('F.conv2d time / mmlk time  (> 1: mmlk faster)')
    import textwrap
    ax.set_title('\n'.join(textwrap.fill(line, 110) for line in title.split('\n')), fontsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f'plot: {path}')


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no CUDA device is available')
    if args.device == 'cpu':
        torch.set_num_threads(args.threads)
    command = 'python ' + ' '.join([osp.relpath(__file__)] + list(sys.argv[1:] if argv is None else argv))
    print(f'# {command}\n# torch {torch.__version__}, {args.device}, threads {torch.get_num_threads()}, '
          f'OMP_WAIT_POLICY={os.environ.get("OMP_WAIT_POLICY")}, {_cpu_name()}, '
          f'{time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}')
    if args.reselect:
        reselect_table(args.table_path)
        return
    if args.write_table:
        if args.device != 'cpu':
            raise SystemExit('--write-table measures the CPU routes; run it with --device cpu')
        write_table(args.table_path, args.batch, args.repeats, args.threads, command)
        return
    if not args.warm_cache:
        import tempfile
        os.environ[_tune.ENV_CACHE_DIR] = tempfile.mkdtemp(prefix='mmlk-bench-cache-')
    if args.model:
        bench_models(args.device, args.repeats, args.model_batch[0], args.model_batch[1], args.size,
                     args.channels_last, args.amp)
        return
    shapes = [s for fam in (args.only or sorted(SHAPES)) for s in SHAPES[fam]]
    if args.shape:
        shapes = [s for s in shapes if any(sel in s[0] for sel in args.shape)]
        if not shapes:
            raise SystemExit(f'--shape {args.shape}: no shape label matches')
    if not args.best_layout:
        dwconv.reset_decisions()
        print(f'# tuning {"on" if _tune.enabled() else "off (MMLK_DWCONV_TUNE=0: shipped table)"}, cache '
              f'{"warm" if args.warm_cache else "cold"} ({_tune.cache_dir()}); ratio (x) = F.conv2d in the same '
              'layout and dtype / ours, > 1 means mmlk is faster')
        print(_format_same_header())
        rows = bench_same_layout(shapes, args.batch, args.device, [getattr(torch, d) for d in args.dtype],
                                 args.layout, args.repeats, args.impl, args.profile)
        print()
        print(summarize_same(rows))
        if args.json:
            with open(args.json, 'w') as f:
                json.dump(rows, f, indent=1)
        if args.plot:
            plot_same(rows, args.plot, f'{command}\n{_cpu_name()}, {args.device}, threads {torch.get_num_threads()}, '
                      f'torch {torch.__version__}')
        return
    print('# times are medians in ms; ours = mmlk in the better input layout (NCHW or channels_last, both timed);'
          '\n# (x) = best torch layout / ours, > 1 means mmlk is faster; [layout:route] = what ours ran')
    print(_format_header())
    rows = bench_shapes(shapes, args.batch, args.device, getattr(torch, args.dtype[0]), args.repeats, args.impl)
    print()
    print(summarize(rows))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)


if __name__ == '__main__':
    main()
