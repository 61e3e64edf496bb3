"""CPU (and generic) implementations of the depthwise 'same' convolution passes.

Every function here works on plain tensors (no autograd); :mod:`mmlk.ops.dwconv` wires them into a
``torch.library`` custom op. Three families of routes exist per pass:

* aten routes (``nchw``, ``cl``): oneDNN / native kernels in either memory layout;
* "transposed" aten routes (``nchw_t``, ``cl_t``): for an odd kernel with 'same' padding the forward
  pass is the input-gradient pass with the kernel flipped (and vice versa), and on this kind of CPU the
  two aten kernels are fast for different shapes, so each pass can borrow the other's kernel;
* ``fft``: rfft2 with 2/3/5-smooth transform sizes, chunked over channels to stay in cache, and for
  the backward pass one spectrum of the output gradient shared by the input and weight gradients. The
  weight gradient is reduced over the batch in the frequency domain, so only one inverse transform
  per channel is needed (this is where oneDNN is weakest: its fast backward-weights kernels reject
  kernel widths > 14, see shared docs, section 5).

The FFT route computes the circular correlation on a ``P >= H + k // 2`` grid, which is the smallest size
for which no wrapped-around term reaches the ``H`` outputs that are kept (for all three passes).
"""
from functools import lru_cache
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

# Bytes of complex spectrum one chunk may hold; about L2-sized chunks were fastest here (2-core EPYC).
_CHUNK_BYTES = 2 * 1024 * 1024

AT_ROUTES = ('nchw', 'cl', 'nchw_t', 'cl_t')
ROUTES = AT_ROUTES + ('fft',)


@lru_cache(maxsize=None)
def smooth_size(n: int, even: bool = False) -> int:
    """Smallest integer >= ``n`` whose only prime factors are 2, 3 and 5 (optionally even)."""
    m = max(int(n), 1)
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1 and (not even or m % 2 == 0):
            return m
        m += 1


def fft_sizes(h: int, w: int, kh: int, kw: int) -> Tuple[int, int]:
    """Transform sizes with no wrap-around on the kept outputs of all three passes."""
    return smooth_size(h + kh // 2), smooth_size(w + kw // 2, even=True)


def _same_padding(weight: torch.Tensor) -> Tuple[int, int]:
    return weight.shape[-2] // 2, weight.shape[-1] // 2


def _layout(x: torch.Tensor) -> torch.memory_format:
    """Memory format to give results so that they match the input's layout."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


# ----------------------------------------------------------------------------------------------
# aten routes
# ----------------------------------------------------------------------------------------------
def _to(x: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    return x.contiguous(memory_format=fmt)


def aten_forward(x: torch.Tensor, weight: torch.Tensor, route: str) -> torch.Tensor:
    """Forward pass (no bias) through an aten kernel; result in the input's layout."""
    fmt = _layout(x)
    pad = _same_padding(weight)
    groups = x.shape[1]
    work = torch.channels_last if route.startswith('cl') else torch.contiguous_format
    xs = _to(x, work)
    if route.endswith('_t'):
        # corr(x, w) == input-gradient of a conv with the flipped kernel evaluated at grad_out=x.
        wf = weight.flip((-2, -1)).contiguous()
        y = torch.ops.aten.convolution_backward(xs, xs, wf, None, [1, 1], list(pad), [1, 1], False, [0, 0],
                                                groups, [True, False, False])[0]
    else:
        y = F.conv2d(xs, weight, None, 1, pad, 1, groups)
    return _to(y, fmt)


def aten_input_grad(grad: torch.Tensor, weight: torch.Tensor, route: str) -> torch.Tensor:
    """Input gradient through an aten kernel; result in the gradient's layout."""
    fmt = _layout(grad)
    pad = _same_padding(weight)
    groups = grad.shape[1]
    work = torch.channels_last if route.startswith('cl') else torch.contiguous_format
    gs = _to(grad, work)
    if route.endswith('_t'):
        gx = F.conv2d(gs, weight.flip((-2, -1)), None, 1, pad, 1, groups)
    else:
        gx = torch.ops.aten.convolution_backward(gs, gs, weight, None, [1, 1], list(pad), [1, 1], False, [0, 0],
                                                 groups, [True, False, False])[0]
    return _to(gx, fmt)


def aten_weight_grad(grad: torch.Tensor, x: torch.Tensor, weight_shape: Tuple[int, ...],
                     route: str) -> torch.Tensor:
    """Weight gradient through aten's backward-weights kernel in the route's layout."""
    kh, kw = weight_shape[-2:]
    work = torch.channels_last if route.startswith('cl') else torch.contiguous_format
    gs, xs = _to(grad, work), _to(x, work)
    w_meta = torch.empty(weight_shape, dtype=x.dtype, device=x.device)
    return torch.ops.aten.convolution_backward(gs, xs, w_meta, None, [1, 1], [kh // 2, kw // 2], [1, 1], False,
                                               [0, 0], x.shape[1], [False, True, False])[1]


# ----------------------------------------------------------------------------------------------
# FFT routes
# ----------------------------------------------------------------------------------------------
def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """FFT maths runs in fp32 (fp64 for fp64 inputs, e.g. gradcheck)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _kernel_spectrum(weight: torch.Tensor, ph_size: int, pw_size: int) -> torch.Tensor:
    """rfft2 of the kernel centred at index 0 (tap ``(kh//2, kw//2)`` at (0, 0)), shape (C, P, P//2+1)."""
    c, _, kh, kw = weight.shape
    wpad = weight.new_zeros((c, ph_size, pw_size), dtype=compute_dtype(weight.dtype))
    wpad[:, :kh, :kw] = weight[:, 0]
    wpad = torch.roll(wpad, shifts=(-(kh // 2), -(kw // 2)), dims=(1, 2))
    return torch.fft.rfft2(wpad)


def _channel_chunk(n: int, c: int, ph: int, pf: int) -> int:
    per_channel = n * ph * pf * 8
    return max(1, min(c, _CHUNK_BYTES // max(per_channel, 1)))


def fft_forward(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Forward pass (no bias) by FFT; fp32 maths, result in ``x``'s dtype and layout."""
    n, c, h, w = x.shape
    kh, kw = weight.shape[-2:]
    ph, pw = fft_sizes(h, w, kh, kw)
    cdt = compute_dtype(x.dtype)
    spec_w = _kernel_spectrum(weight, ph, pw).conj_physical()
    fmt = _layout(x)
    out = torch.empty((n, c, h, w), dtype=x.dtype, device=x.device, memory_format=fmt)
    step = _channel_chunk(n, c, ph, pw // 2 + 1)
    for c0 in range(0, c, step):
        c1 = min(c, c0 + step)
        xs = x[:, c0:c1].to(cdt)
        spec = torch.fft.rfft2(xs, s=(ph, pw))
        spec.mul_(spec_w[c0:c1])
        out[:, c0:c1] = torch.fft.irfft2(spec, s=(ph, pw))[..., :h, :w]
    return out


def fft_backward(grad: torch.Tensor, x: Optional[torch.Tensor], weight: torch.Tensor, need_input: bool,
                 need_weight: bool) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Input and/or weight gradient by FFT, sharing one spectrum of ``grad`` between them.

    The weight gradient is the cross-correlation of ``grad`` and ``x`` at lags ``[-k//2, k//2]``,
    summed over the batch in the frequency domain before a single inverse transform per channel.
    """
    n, c, h, w = grad.shape
    kh, kw = weight.shape[-2:]
    ph, pw = fft_sizes(h, w, kh, kw)
    pf = pw // 2 + 1
    spec_w = _kernel_spectrum(weight, ph, pw) if need_input else None
    gx = None
    if need_input:
        gx = torch.empty((n, c, h, w), dtype=grad.dtype, device=grad.device, memory_format=_layout(grad))
    cdt = compute_dtype(grad.dtype)
    acc = torch.empty((c, ph, pf), dtype=cdt.to_complex(), device=grad.device) if need_weight else None
    step = _channel_chunk(n, c, ph, pf) if not need_weight else max(1, _channel_chunk(n, c, ph, pf) // 2)
    for c0 in range(0, c, step):
        c1 = min(c, c0 + step)
        spec_g = torch.fft.rfft2(grad[:, c0:c1].to(cdt), s=(ph, pw))
        if need_weight:
            spec_x = torch.fft.rfft2(x[:, c0:c1].to(cdt), s=(ph, pw))
            # conj(G) * X, summed over the batch: the frequency-domain cross-correlation.
            spec_x.mul_(spec_g.conj())
            torch.sum(spec_x, dim=0, out=acc[c0:c1])
        if need_input:
            spec_g.mul_(spec_w[c0:c1])
            gx[:, c0:c1] = torch.fft.irfft2(spec_g, s=(ph, pw))[..., :h, :w]
    gw = None
    if need_weight:
        corr = torch.fft.irfft2(acc, s=(ph, pw))
        # lag t lives at index t mod P; tap u of the kernel is lag u - k//2.
        gw = torch.roll(corr, shifts=(kh // 2, kw // 2), dims=(1, 2))[:, :kh, :kw]
        gw = gw.unsqueeze(1).to(weight.dtype).contiguous()
    return gx, gw


# ----------------------------------------------------------------------------------------------
# route dispatch helpers
# ----------------------------------------------------------------------------------------------
def effective_kernel(kh: int, kw: int, h: int, w: int) -> Tuple[int, int]:
    """Kernel size after dropping taps that only ever see zero padding.

    With 'same' padding, a tap at offset ``t`` from the centre reads inside the map only if
    ``|t| <= H - 1``, so a kernel larger than ``2H - 1`` can be cropped to that size for free.
    """
    return min(kh, 2 * h - 1), min(kw, 2 * w - 1)


def crop_kernel(weight: torch.Tensor, h: int, w: int) -> torch.Tensor:
    kh, kw = weight.shape[-2:]
    ekh, ekw = effective_kernel(kh, kw, h, w)
    if (ekh, ekw) == (kh, kw):
        return weight
    oh, ow = (kh - ekh) // 2, (kw - ekw) // 2
    return weight[..., oh:oh + ekh, ow:ow + ekw]


def run_forward(x: torch.Tensor, weight: torch.Tensor, route: str) -> torch.Tensor:
    weight = crop_kernel(weight, x.shape[-2], x.shape[-1])
    if route == 'fft':
        return fft_forward(x, weight)
    if route in AT_ROUTES:
        return aten_forward(x, weight, route)
    raise ValueError(f'unknown CPU route {route!r}; expected one of {ROUTES}')


def run_input_grad(grad: torch.Tensor, weight: torch.Tensor, route: str) -> torch.Tensor:
    weight = crop_kernel(weight, grad.shape[-2], grad.shape[-1])
    if route == 'fft':
        return fft_backward(grad, None, weight, True, False)[0]
    if route in AT_ROUTES:
        return aten_input_grad(grad, weight, route)
    raise ValueError(f'unknown CPU route {route!r}; expected one of {ROUTES}')


def run_weight_grad(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, route: str) -> torch.Tensor:
    cropped = crop_kernel(weight, grad.shape[-2], grad.shape[-1])
    if route == 'fft':
        gw = fft_backward(grad, x, cropped, False, True)[1]
    elif route in AT_ROUTES:
        gw = aten_weight_grad(grad, x, tuple(cropped.shape), route)
    else:
        raise ValueError(f'unknown CPU route {route!r}; expected one of {ROUTES}')
    return uncrop_weight_grad(gw, weight.shape)


def uncrop_weight_grad(gw: torch.Tensor, shape: Tuple[int, ...]) -> torch.Tensor:
    """Zero-pad a weight gradient of a cropped kernel back to the full kernel shape."""
    kh, kw = shape[-2:]
    ekh, ekw = gw.shape[-2:]
    if (ekh, ekw) == (kh, kw):
        return gw
    oh, ow = (kh - ekh) // 2, (kw - ekw) // 2
    return F.pad(gw, (ow, kw - ekw - ow, oh, kh - ekh - oh))
