"""Route ``triton``: the Triton kernels of :mod:`mmlk.kernels.triton_dwconv`, and their launchers.

The kernels ship as Python source in the top-level ``kernels/`` directory, importable as the package
``mmlk.kernels`` (``setup.py`` maps it; in a checkout ``mmlk/kernels`` links to it). They are imported on the
first launch only, so ``mmlk.ops`` imports without triton. Triton runs them on CUDA tensors, or on CPU tensors
under ``TRITON_INTERPRET=1`` (how the tests verify them without a GPU; the variable must be set before the
kernels are imported).

'auto' only times this route on CUDA and only after :func:`self_check` passed there once; ``impl='triton'``
runs it wherever :func:`usable_on` says it can.
"""
import importlib
import importlib.util
import math
import os
import warnings
from types import ModuleType
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from ..route_table import Route, register

KERNEL_MODULE = 'mmlk.kernels.triton_dwconv'
_self_check: Dict[int, bool] = {}


def interpreter_enabled() -> bool:
    return os.environ.get('TRITON_INTERPRET', '0') not in ('', '0')


def triton_importable() -> bool:
    try:
        return importlib.util.find_spec('triton') is not None
    except (ImportError, ValueError):  # a finder that blocks it, or a half-removed module
        return False


def find_kernel_file() -> str:
    """Path of the kernel source (for tools and error messages; found without importing triton)."""
    spec = importlib.util.find_spec(KERNEL_MODULE)
    if spec is None or spec.origin is None:
        raise ImportError(f'{KERNEL_MODULE} is missing: reinstall mmlk (pip install -e .), or run from a '
                          'checkout holding kernels/ and the mmlk/kernels link to it')
    return spec.origin


def load_kernels() -> ModuleType:
    """The kernel module (an ordinary import: the import lock makes the first one thread-safe)."""
    return importlib.import_module(KERNEL_MODULE)


def usable_on(t: torch.Tensor) -> bool:
    """Whether Triton can run on this tensor's device in this process."""
    if not triton_importable():
        return False
    if t.is_cuda:
        return True
    return t.device.type == 'cpu' and interpreter_enabled()


def _pow2(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, 1 << max(0, math.ceil(math.log2(max(n, 1))))))


def _taps_matrix(weight: torch.Tensor) -> torch.Tensor:
    """(C, 1, KH, KW) -> (KH * KW, C), channel-contiguous for coalesced per-tap loads."""
    c, _, kh, kw = weight.shape
    return weight.reshape(c, kh * kw).t().contiguous()


def _nhwc_strides(t: torch.Tensor) -> Tuple[int, int, int, int]:
    sn, sc, sh, sw = t.stride()
    return sn, sh, sw, sc


def _autotuned() -> bool:
    """Autotuned launches on CUDA; one fixed configuration under the CPU interpreter (no CUDA events there)."""
    return not interpreter_enabled()


def cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b


def forward(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
            flip: bool = False, config: Optional[Dict[str, int]] = None) -> torch.Tensor:
    """Depthwise 'same' correlation (``flip=True``: with the kernel rotated 180 degrees).

    ``config`` forces block sizes (``BLOCK_H``, ``BLOCK_W``, ``BLOCK_C``; the tests run every autotuning
    configuration this way under the interpreter); by default CUDA launches go through ``triton.autotune``.
    """
    mod = load_kernels()
    n, c, h, w = x.shape
    kh, kw = weight.shape[-2:]
    y = torch.empty_like(x)  # keeps x's memory format
    taps = _taps_matrix(weight)
    args = (x, taps, bias if bias is not None else taps, y, h, w, c, kh, kw, *_nhwc_strides(x), *_nhwc_strides(y))
    if config is None and _autotuned():
        grid = lambda meta: (cdiv(h, meta['BLOCK_H']) * cdiv(w, meta['BLOCK_W']), n,  # noqa: E731
                             cdiv(c, meta['BLOCK_C']))
        mod.dwconv2d_fwd_tuned[grid](*args, HAS_BIAS=bias is not None, FLIP=flip)
        return y
    blocks = config or dict(BLOCK_H=_pow2(h, 1, 4), BLOCK_W=_pow2(w, 4, 16), BLOCK_C=_pow2(c, 4, 32))
    grid = (cdiv(h, blocks['BLOCK_H']) * cdiv(w, blocks['BLOCK_W']), n, cdiv(c, blocks['BLOCK_C']))
    mod.dwconv2d_fwd_kernel[grid](*args, HAS_BIAS=bias is not None, FLIP=flip, **blocks)
    return y


def input_grad(grad: torch.Tensor, weight: torch.Tensor, config: Optional[Dict[str, int]] = None) -> torch.Tensor:
    """For an odd kernel and 'same' padding the input gradient is the correlation with the flipped kernel."""
    return forward(grad, weight, None, flip=True, config=config)


def weight_grad(grad: torch.Tensor, x: torch.Tensor, weight_shape: Tuple[int, ...],
                config: Optional[Dict[str, int]] = None) -> torch.Tensor:
    """Weight gradient as a deterministic split reduction (fp32 partial sums per image x row chunk)."""
    mod = load_kernels()
    n, c, h, w = x.shape
    kh, kw = weight_shape[-2:]
    # Enough row chunks per image that the grid fills a GPU even for batch 1, without tiny chunks.
    rows = max(1, min(h, 8))
    splits_h = cdiv(h, rows)
    # every (split, tap, channel) slot is written, padding-only taps with zeros, so no zero-fill is needed
    # (and autotuning, which runs the kernel once per configuration, needs no reset either)
    part = torch.empty((n * splits_h, kh * kw, c), dtype=torch.float32, device=x.device)
    args = (x, grad, part, h, w, c, kh, kw, rows, splits_h, *_nhwc_strides(x), *_nhwc_strides(grad))
    if config is None and _autotuned():
        grid = lambda meta: (kh * cdiv(kw, meta['BLOCK_V']), cdiv(c, meta['BLOCK_C']), n * splits_h)  # noqa: E731
        mod.dwconv2d_wgrad_tuned[grid](*args)
    else:
        blocks = config or dict(BLOCK_W=_pow2(w, 4, 8), BLOCK_V=_pow2(kw, 1, 16), BLOCK_C=_pow2(c, 4, 32))
        grid = (kh * cdiv(kw, blocks['BLOCK_V']), cdiv(c, blocks['BLOCK_C']), n * splits_h)
        mod.dwconv2d_wgrad_kernel[grid](*args, **blocks)
    gw = part.sum(0).t().reshape(c, 1, kh, kw)
    return gw.to(x.dtype)


def self_check(device: torch.device) -> bool:
    """One-time (per device, per process) comparison of the Triton kernels against ``F.conv2d``.

    Runs forward, input gradient and weight gradient on a small random problem in fp32; on any
    mismatch or error it warns once and returns False, and 'auto' then stays on aten for that device.
    """
    idx = device.index if device.index is not None else (torch.cuda.current_device() if device.type == 'cuda'
                                                         else -1)
    if idx in _self_check:
        return _self_check[idx]
    ok = False
    reason = ''
    try:
        gen = torch.Generator(device='cpu').manual_seed(0)
        x = torch.randn(2, 24, 13, 11, generator=gen).to(device).contiguous(memory_format=torch.channels_last)
        wt = torch.randn(24, 1, 7, 9, generator=gen).to(device)
        b = torch.randn(24, generator=gen).to(device)
        g = torch.randn(2, 24, 13, 11, generator=gen).to(device).contiguous(memory_format=torch.channels_last)
        ref_y = F.conv2d(x.double(), wt.double(), b.double(), 1, (3, 4), 1, 24)
        ref_gx, ref_gw, _ = torch.ops.aten.convolution_backward(
            g.double(), x.double(), wt.double(), None, [1, 1], [3, 4], [1, 1], False, [0, 0], 24,
            [True, True, False])
        got = (forward(x, wt, b), input_grad(g, wt), weight_grad(g, x, wt.shape))
        errs = [((a.double() - r).abs().max() / r.abs().max().clamp_min(1e-12)).item()
                for a, r in zip(got, (ref_y, ref_gx, ref_gw))]
        ok = all(e < 1e-4 for e in errs)
        reason = f'relative errors {errs}'
    except Exception as e:  # noqa: BLE001 - any failure means "do not use Triton here"
        reason = f'{type(e).__name__}: {e}'
    if not ok:
        warnings.warn(f'mmlk.ops.dwconv2d: the Triton kernels failed their self-check on {device} ({reason}); '
                      "impl='auto' falls back to F.conv2d for this device", RuntimeWarning)
    _self_check[idx] = ok
    return ok


def _supports(x: torch.Tensor) -> Optional[str]:
    if usable_on(x) and x.dtype != torch.float64:
        return None
    return ("dwconv2d(impl='triton') needs a CUDA tensor (or TRITON_INTERPRET=1 on CPU) in fp32/fp16/bf16 "
            f'and an installed triton; got {x.device} {x.dtype}. Use impl="auto" to pick a route for you.')


ROUTE = register(Route(
    name='triton', order=60, selectable=True, auto_devices=frozenset({'cuda'}),
    supports=_supports, auto_ok=lambda x: self_check(x.device),
    # through the module's globals, so that tests can replace a launcher
    forward=lambda x, w, b: forward(x, w, b),
    input_grad=lambda g, w: input_grad(g, w),
    weight_grad=lambda g, x, shape: weight_grad(g, x, shape),
    fuses_bias=True, crops=False))
