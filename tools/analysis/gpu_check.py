"""One-command GPU check of the large-kernel depthwise convolution (torch + triton + numpy only).

Run on a CUDA machine from a checkout (no mmengine / mmcv needed; the op package is loaded on its own)::

    python tools/analysis/gpu_check.py --out gpu_check.json

What it does (about 3-6 minutes on one modern GPU, most of it Triton compilation and autotuning):

1. correctness: every route ('torch' = cuDNN in the input's layout, 'cl' = cuDNN in channels_last, 'triton',
   'auto') for fp32 / fp16 / bf16, NCHW and channels_last, at every RepLKNet (31B, 31L, XL), RepNeXt and
   UniRepLKNet-T / S large-kernel shape (batch 2), forward, input gradient and weight gradient, against float64 ``F.conv2d``;
   the error is max |ours - ref| / max |ref| per tensor;
2. speed: forward, input-grad and weight-grad times (CUDA events, medians) of cuDNN NCHW, cuDNN channels_last,
   Triton and 'auto' at the RepLKNet-31B stage shapes, RepNeXt-M3's shapes and UniRepLKNet-T / S stages 2-4,
   batch 1 and 8 (fp32 and bf16 in
   both layouts, fp16 channels_last), with the autotuner's choices and its one-time cost per problem;
3. peak memory (``torch.cuda.max_memory_allocated``) of each route's forward + backward at batch 8;
4. writes a JSON with everything and prints a Markdown table (GPU name, torch / triton / CUDA versions).

Exit status 1 when any correctness check fails or 'auto' is more than 10% slower than the better cuDNN layout on
a pass that takes at least 0.1 ms (then the table says where).
"""
import argparse
import json
import os
import os.path as osp
import platform
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from ops_loader import load_ops  # noqa: E402

# (model, stage, C, H, W, kh, kw) at 224 input (stride-4 stem: 56, 28, 14, 7)
REPLKNET = [('31B', 1, 128, 56, 56, 31, 31), ('31B', 2, 256, 28, 28, 29, 29), ('31B', 3, 512, 14, 14, 27, 27),
            ('31B', 4, 1024, 7, 7, 13, 13), ('31L', 1, 192, 56, 56, 31, 31), ('31L', 2, 384, 28, 28, 29, 29),
            ('31L', 3, 768, 14, 14, 27, 27), ('31L', 4, 1536, 7, 7, 13, 13), ('XL', 1, 256, 56, 56, 27, 27),
            ('XL', 2, 512, 28, 28, 27, 27), ('XL', 3, 1024, 14, 14, 27, 27), ('XL', 4, 2048, 7, 7, 13, 13),
            # the small kernel merged into the large one is 5x5 (31B / 31L), run as its own conv before merging
            ('31B', 1, 128, 56, 56, 5, 5)]
# RepNeXt-M3 (dims 64/128/256/512; ChunkConv gives each branch C/4 channels): merged conv_m 7x7, conv_l 1x11
# and 11x1, and the merged 11x11; M5 (dims 80..640) for the widest channel counts.
REPNEXT = [('M3', 1, 16, 56, 56, 7, 7), ('M3', 2, 32, 28, 28, 7, 7), ('M3', 3, 64, 14, 14, 7, 7),
           ('M3', 4, 128, 7, 7, 7, 7), ('M3', 1, 16, 56, 56, 1, 11), ('M3', 1, 16, 56, 56, 11, 1),
           ('M3', 3, 64, 14, 14, 1, 11), ('M3', 2, 32, 28, 28, 11, 11), ('M5', 1, 20, 56, 56, 7, 7),
           ('M5', 4, 160, 7, 7, 11, 11)]
# UniRepLKNet-T / S (dims 80..640 / 96..768): the merged 13x13 kernel of the Dilated Reparam Block at every stage
# map of a 224 input (stage 1 is 3x3 in the default kernel tables; measured anyway for 13x13 configurations).
UNIREPLKNET = [(model, i + 1, c, m, m, 13, 13) for model, dims in (('UniT', (80, 160, 320, 640)),
                                                                   ('UniS', (96, 192, 384, 768)))
               for i, (c, m) in enumerate(zip(dims, (56, 28, 14, 7)))]
# one list per model family (add a family by adding its list here and to SPEED_SHAPES)
CORRECTNESS_SHAPES = REPLKNET + REPNEXT + UNIREPLKNET
SPEED_SHAPES = REPLKNET[:4] + [REPNEXT[0], REPNEXT[4], REPNEXT[7]] + UNIREPLKNET[1:4] + UNIREPLKNET[5:8]
# --smoke: the script's own logic on CPU under TRITON_INTERPRET=1 with tiny shapes (CI / no GPU)
# (one odd-sized map and non-square kernel: the kernels' own cases are tests/test_dwconv.py's interpreter tests)
SMOKE = [('tiny', 1, 6, 9, 8, 5, 3)]
TOL = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}
PASSES = ('fwd', 'gx', 'gw')
DEVICE = 'cuda'


def _sync() -> None:
    if DEVICE == 'cuda':
        torch.cuda.synchronize()


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


def _aten_bwd(g, x, w, mask):
    kh, kw = w.shape[-2:]
    return torch.ops.aten.convolution_backward(g, x, w, None, [1, 1], [kh // 2, kw // 2], [1, 1], False, [0, 0],
                                               x.shape[1], mask)


def _data(n, c, h, w, kh, kw, dtype, cl, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g)
    wt = torch.randn(c, 1, kh, kw, generator=g) / (kh * kw) ** 0.5
    b = torch.randn(c, generator=g)
    gy = torch.randn(n, c, h, w, generator=g)
    fmt = torch.channels_last if cl else torch.contiguous_format
    dev = DEVICE
    return (x.to(dev, dtype).contiguous(memory_format=fmt), wt.to(dev, dtype), b.to(dev, dtype),
            gy.to(dev, dtype).contiguous(memory_format=fmt))


# ----------------------------------------------------------------------------------------------
# 1. correctness
# ----------------------------------------------------------------------------------------------
def check_correctness(ops, shapes, dtypes, routes) -> List[dict]:
    rows = []
    for (model, stage, c, h, w, kh, kw) in shapes:
        for dtype in dtypes:
            for cl in (False, True):
                x, wt, b, gy = _data(2, c, h, w, kh, kw, dtype, cl)
                xd, wd, bd, gd = (t.double() for t in (x, wt, b, gy))
                ref_y = F.conv2d(xd, wd, bd, 1, (kh // 2, kw // 2), 1, c)
                ref_gx, ref_gw, _ = _aten_bwd(gd, xd, wd, [True, True, False])
                for impl in routes:
                    row = dict(model=model, stage=stage, c=c, h=h, w=w, kh=kh, kw=kw, dtype=str(dtype)[6:],
                               layout='cl' if cl else 'nchw', impl=impl)
                    try:
                        xr, wr, br = (t.detach().clone().requires_grad_() for t in (x, wt, b))
                        y = ops.dwconv2d(xr, wr, br, impl)
                        y.backward(gy)
                        _sync()
                        errs = dict(fwd=_rel(y, ref_y), gx=_rel(xr.grad, ref_gx), gw=_rel(wr.grad, ref_gw))
                        layout_ok = y.is_contiguous(memory_format=torch.channels_last) == cl or c == 1
                        row.update(errs, ok=bool(all(e < TOL[dtype] for e in errs.values()) and layout_ok
                                                 and y.dtype == dtype))
                    except Exception as e:  # noqa: BLE001 - reported in the table, fails the check
                        row.update(error=f'{type(e).__name__}: {e}'[:300], ok=False)
                    rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------
# 2. speed
# ----------------------------------------------------------------------------------------------
def median_ms(fn: Callable[[], object], reps: int, inner: int = 1) -> float:
    fn()
    _sync()
    times = []
    if DEVICE != 'cuda':
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(inner):
            fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e) / inner)
    return statistics.median(times)


def _pass_fns(ops, dw, impl: str, x, wt, gy) -> Dict[str, Callable[[], object]]:
    """fwd / gx / gw of one impl on inputs in their layout, the way eager autograd runs them."""
    kh, kw = wt.shape[-2:]
    if impl in ('nchw', 'cl'):
        fmt = torch.channels_last if impl == 'cl' else torch.contiguous_format
        return {'fwd': lambda: F.conv2d(x.contiguous(memory_format=fmt), wt, None, 1, (kh // 2, kw // 2), 1,
                                        x.shape[1]),
                'gx': lambda: _aten_bwd(gy.contiguous(memory_format=fmt), x.contiguous(memory_format=fmt), wt,
                                        [True, False, False]),
                'gw': lambda: _aten_bwd(gy.contiguous(memory_format=fmt), x.contiguous(memory_format=fmt), wt,
                                        [False, True, False])}
    from mmlk.ops import _executor
    xr, wr = x.detach().requires_grad_(), wt.detach().requires_grad_()
    ops.dwconv2d(xr, wr, None, impl)  # decide (and for 'auto', tune) the routes of all three passes
    routes = dw._decide(xr, wr, impl, True) or (_executor.native(x),) * 3
    return {'fwd': lambda: ops.dwconv2d(x, wt, None, impl),
            'gx': lambda: _executor.backward(gy, x, wt, routes, True, False),
            'gw': lambda: _executor.backward(gy, x, wt, routes, False, True),
            'routes': routes}


def check_speed(ops, shapes, plans, batches, reps) -> List[dict]:
    from mmlk.ops import _tune
    from mmlk.ops import dwconv as dw
    tuner = _tune.get_tuner()
    rows = []
    for dtype, cl in plans:
        for n in batches:
            for (model, stage, c, h, w, kh, kw) in shapes:
                x, wt, _, gy = _data(n, c, h, w, kh, kw, dtype, cl)
                row = dict(model=model, stage=stage, n=n, c=c, h=h, w=w, kh=kh, kw=kw, dtype=str(dtype)[6:],
                           layout='cl' if cl else 'nchw')
                before = tuner.tuning_seconds
                fns = {impl: _pass_fns(ops, dw, impl, x, wt, gy) for impl in ('nchw', 'cl', 'triton', 'auto')}
                row['tune_ms'] = (tuner.tuning_seconds - before) * 1e3
                row['auto_routes'] = '/'.join(fns['auto'].pop('routes'))
                fns['triton'].pop('routes')
                for p in PASSES:
                    for impl, f in fns.items():
                        row[f'{p}_{impl}'] = median_ms(f[p], reps)
                    best = min(row[f'{p}_nchw'], row[f'{p}_cl'])
                    row[f'{p}_auto_vs_cudnn'] = best / row[f'{p}_auto']
                rows.append(row)
                print(_speed_line(row), flush=True)
    return rows


def check_memory(ops, shapes, dtype=torch.float32, n=8) -> List[dict]:
    rows = []
    if DEVICE != 'cuda':
        return rows
    for (model, stage, c, h, w, kh, kw) in shapes:
        row = dict(model=model, stage=stage, n=n, c=c, h=h, kh=kh)
        for impl in ('torch', 'triton', 'auto'):
            x, wt, _, gy = _data(n, c, h, w, kh, kw, dtype, True)
            xr, wr = x.requires_grad_(), wt.requires_grad_()
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            ops.dwconv2d(xr, wr, None, impl).backward(gy)
            torch.cuda.synchronize()
            row[f'{impl}_peak_mib'] = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------
def _speed_line(r: dict) -> str:
    cells = []
    for p in PASSES:
        cells.append(f"{r[f'{p}_nchw']:.3f} / {r[f'{p}_cl']:.3f} / {r[f'{p}_triton']:.3f} / {r[f'{p}_auto']:.3f} "
                     f"({r[f'{p}_auto_vs_cudnn']:.2f}x)")
    return (f"| {r['dtype']} | {r['layout']} | {r['model']} s{r['stage']} ({r['c']},{r['h']},{r['kh']}x{r['kw']}) | "
            f"{r['n']} | {r['auto_routes']} | " + ' | '.join(cells) + f" | {r['tune_ms']:.0f} |")


def environment() -> Dict[str, object]:
    if DEVICE != 'cuda':
        return dict(gpu='none (smoke run on CPU, TRITON_INTERPRET=1)', torch=torch.__version__)
    props = torch.cuda.get_device_properties(0)
    try:
        import triton
        tv = triton.__version__
    except Exception:  # noqa: BLE001
        tv = None
    return dict(gpu=props.name, capability=f'{props.major}.{props.minor}', memory_gib=round(props.total_memory / 2**30),
                torch=torch.__version__, cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(), triton=tv,
                python=platform.python_version(), date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default='gpu_check.json')
    p.add_argument('--reps', type=int, default=20, help='CUDA-event samples per median (default 20)')
    p.add_argument('--quick', action='store_true', help='31B shapes only, fp32 + bf16, batch 8 (about a minute)')
    p.add_argument('--smoke', action='store_true',
                   help='check this script on CPU: TRITON_INTERPRET=1, tiny shapes, nothing measured that matters')
    args = p.parse_args(argv)
    global DEVICE
    if args.smoke:
        if os.environ.get('TRITON_INTERPRET') != '1':
            raise SystemExit('--smoke needs TRITON_INTERPRET=1 in the environment (set before triton loads)')
        DEVICE = 'cpu'
    elif not torch.cuda.is_available():
        print('gpu_check: no CUDA device; nothing measured', file=sys.stderr)
        return 2
    # a fresh tuning cache, so that the autotuner's choices and its cold cost are what this run measured
    os.environ.setdefault('MMLK_CACHE_DIR', tempfile.mkdtemp(prefix='mmlk-gpu-check-'))
    os.environ.pop('MMLK_DWCONV_TUNE', None)
    ops = load_ops()
    from mmlk.ops.routes import triton as _triton
    t0 = time.time()
    env = environment()
    env['triton_self_check'] = _triton.self_check(torch.device(DEVICE))
    print('# ' + json.dumps(env), flush=True)
    shapes = SMOKE if args.smoke else REPLKNET[:4] if args.quick else CORRECTNESS_SHAPES
    dtypes = (torch.float32, torch.bfloat16) if args.quick or args.smoke else \
        (torch.float32, torch.float16, torch.bfloat16)
    correct = check_correctness(ops, shapes, dtypes, ('torch', 'cl', 'triton', 'auto'))
    bad = [r for r in correct if not r['ok']]
    print(f'# correctness: {len(correct) - len(bad)}/{len(correct)} ok ({time.time() - t0:.0f} s)', flush=True)
    for r in bad[:40]:
        print('#   FAIL', json.dumps(r), flush=True)
    plans = [(torch.float32, False), (torch.float32, True), (torch.bfloat16, False), (torch.bfloat16, True),
             (torch.float16, True)]
    if args.quick:
        plans = plans[:4]
    print('| dtype | layout | shape | N | auto routes | ' +
          ' | '.join(f'{q} cudnn-nchw / cudnn-cl / triton / auto ms (auto vs best cuDNN)' for q in PASSES) +
          ' | tune ms |\n|' + '---|' * 9, flush=True)
    if args.smoke:
        speed = check_speed(ops, SMOKE[:1], plans[:2], (1,), 2)
    else:
        speed = check_speed(ops, SPEED_SHAPES[:4] if args.quick else SPEED_SHAPES, plans,
                            (8,) if args.quick else (1, 8), args.reps)
    memory = check_memory(ops, REPLKNET[:4])
    print('\n| shape (batch 8, fp32, channels_last) | cuDNN peak MiB | triton peak MiB | auto peak MiB |\n|---|---|---|---|')
    for r in memory:
        print(f"| {r['model']} s{r['stage']} ({r['c']},{r['h']},{r['kh']}) | {r['torch_peak_mib']:.0f} | "
              f"{r['triton_peak_mib']:.0f} | {r['auto_peak_mib']:.0f} |")
    slow = [(r['dtype'], r['layout'], r['model'], r['stage'], r['n'], q, round(r[f'{q}_auto_vs_cudnn'], 2))
            for r in speed for q in PASSES
            if min(r[f'{q}_nchw'], r[f'{q}_cl']) >= 0.1 and r[f'{q}_auto_vs_cudnn'] < 0.9]
    total = time.time() - t0
    print(f'\n# auto slower than the better cuDNN layout by > 10% (passes >= 0.1 ms): {slow or "none"}')
    print(f'# total {total:.0f} s')
    with open(args.out, 'w') as f:
        json.dump(dict(environment=env, correctness=correct, speed=speed, memory=memory, slow=slow,
                       seconds=total), f, indent=1)
    print(f'# wrote {args.out}')
    # a smoke run's timings (CPU, Triton's interpreter) mean nothing: only its correctness counts
    return 1 if bad or (slow and not args.smoke) else 0


if __name__ == '__main__':
    sys.exit(main())
