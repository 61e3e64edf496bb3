"""CPU (and generic) implementations of the depthwise 'same' convolution passes.

Every function here works on plain tensors (no autograd); :mod:`mmlk.ops.dwconv` wires them into a
``torch.library`` custom op. Three families of routes exist per pass:

* aten routes (``nchw``, ``cl``): oneDNN / native kernels in either memory layout;
* "transposed" aten routes (``nchw_t``, ``cl_t``): for an odd kernel with 'same' padding the forward
  pass is the input-gradient pass with the kernel flipped (and vice versa), and on this kind of CPU the
  two aten kernels are fast for different shapes, so each pass can borrow the other's kernel;
* ``fft``: separable real FFTs with 2/3/5-smooth transform sizes, chunked over channels to stay in
  cache, and for the backward pass one spectrum of the output gradient shared by the input and weight
  gradients. The weight gradient is reduced over the batch in the frequency domain and inverted only at
  the kernel's lags (this is where oneDNN is weakest: its fast backward-weights kernels reject kernel
  widths > 14, see shared docs, section 5);
* ``dft``: the same algorithm with every 1-D transform done as a GEMM with a pruned DFT matrix (exact
  sizes ``H + k // 2``, only the H x W inputs read and outputs produced), which wins on mid-sized maps
  where MKL's per-transform overhead dominates batched small FFTs.

Kernel spectra are always computed with two small GEMMs (cheaper than C zero-padded 2-D FFTs).

Both Fourier routes compute the circular correlation on a ``P >= H + k // 2`` grid, the smallest size for
which no wrapped-around term reaches the ``H`` outputs that are kept (for all three passes).

Error model of the Fourier routes (fp32 maths): a transform mixes every pixel of a plane into every
coefficient, so its round-off is not local. For each (image, channel) plane the absolute error of EVERY output
is bounded by about ``eps_fp32 * ||x_plane||_2 * ||w_c||_2`` (measured 0.15-0.45 times that on the RepLKNet
shapes, for spikes up to 1e8; :func:`fourier_error_bound` returns 4 times it and the tests hold the routes to
it against float64). A direct route's error is instead relative to the magnitudes inside the kernel's
footprint. The two agree for inputs of ordinary dynamic range; with a few huge values among small ones (e.g.
``x[5, 5] = 1e6`` in a 40x40 plane gives ~0.04 absolute error at pixels the value cannot reach) use a direct
route (``impl='torch'`` or ``'cl'``). Non-finite values are never sent through a transform: planes holding a
NaN / Inf take the direct route (see ``mmlk.ops.dwconv``), so they keep F.conv2d's NaN / Inf pattern.
"""
from functools import lru_cache
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

# Bytes of complex spectrum one chunk may hold; about L2-sized chunks were fastest here (2-core EPYC).
_CHUNK_BYTES = 2 * 1024 * 1024

AT_ROUTES = ('nchw', 'cl', 'nchw_t', 'cl_t')
ROUTES = AT_ROUTES + ('fft', 'dft')
FOURIER_ROUTES = ('fft', 'dft')


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


@lru_cache(maxsize=256)
def _lag_mats(p_h: int, p_w: int, kh: int, kw: int, dtype: torch.dtype, device: str):
    """Inverse 2-D DFT evaluated only at the kernel's lags ``[-k//2, k//2]``.

    Returns ``lh_t`` (P_h, kh) complex, applied along H, and ``lw`` (2 * (P_w // 2 + 1), kw) real, the
    Hermitian-weighted inverse real DFT along W acting on (re, im)-interleaved spectra.
    """
    f64 = torch.float64
    pf = p_w // 2 + 1
    cw = torch.full((pf,), 2.0, dtype=f64)
    cw[0] = 1.0
    if p_w % 2 == 0:
        cw[-1] = 1.0
    lag_h = torch.arange(kh, dtype=f64) - kh // 2
    ang_lh = 2 * torch.pi * torch.outer(torch.arange(p_h, dtype=f64), lag_h) / p_h
    lh_t = torch.polar(torch.ones_like(ang_lh), ang_lh) / p_h
    lag_w = torch.arange(kw, dtype=f64) - kw // 2
    ang_lw = 2 * torch.pi * torch.outer(torch.arange(pf, dtype=f64), lag_w) / p_w
    lw = torch.stack((cw[:, None] * torch.cos(ang_lw), -cw[:, None] * torch.sin(ang_lw)), dim=1)
    lw = lw.reshape(2 * pf, kw) / p_w
    return lh_t.to(device=device, dtype=dtype.to_complex()), lw.to(device=device, dtype=dtype)


def _lag_inverse(acc: torch.Tensor, kh: int, kw: int, p_w: int, fft_along_h: bool = False) -> torch.Tensor:
    """(C, Pf, P_h) cross-spectrum -> (C, 1, kh, kw) correlation at the kernel's lags.

    Along W the inverse is a small real GEMM evaluated at the kw lags only. Along H it is either a
    GEMM at the kh lags (any P_h) or, for the FFT route's smooth P_h, a full inverse FFT followed by
    picking the kh lag rows, which is cheaper once kh is more than a few taps.
    """
    c, pf, p_h = acc.shape
    real = acc.real.dtype
    lh_t, lw = _lag_mats(p_h, p_w, kh, kw, real, str(acc.device))
    if fft_along_h:
        full = torch.fft.ifft(acc, dim=-1)  # (C, pf, P_h); lag t sits at index t mod P_h
        lags = torch.arange(kh, device=acc.device) - kh // 2
        a = full.index_select(-1, lags % p_h)  # (C, pf, kh)
    else:
        a = torch.matmul(acc.reshape(c * pf, p_h), lh_t).view(c, pf, kh)
    a = a.transpose(1, 2).contiguous()
    a = torch.view_as_real(a).reshape(c * kh, 2 * pf)
    return torch.matmul(a, lw).view(c, 1, kh, kw)


def _accumulate_cross_spectrum(spec_x: torch.Tensor, spec_g: torch.Tensor, out: torch.Tensor) -> None:
    """out = sum over the batch of conj(G) * X (the frequency-domain cross-correlation); clobbers spec_x."""
    if spec_x.shape[0] == 1:
        torch.mul(spec_x[0], spec_g[0].conj(), out=out)
    else:
        spec_x.mul_(spec_g.conj())
        torch.sum(spec_x, dim=0, out=out)


@lru_cache(maxsize=256)
def _kernel_dft_mats(kh: int, kw: int, p_h: int, p_w: int, dtype: torch.dtype, device: str):
    """Pruned DFT matrices taking a centred (kh, kw) kernel to its (P_h, P_w // 2 + 1) spectrum."""
    f64 = torch.float64
    pf = p_w // 2 + 1
    ang_w = 2 * torch.pi * torch.outer(torch.arange(kw, dtype=f64) - kw // 2, torch.arange(pf, dtype=f64)) / p_w
    ew = torch.polar(torch.ones_like(ang_w), -ang_w)  # (kw, pf)
    ang_h = 2 * torch.pi * torch.outer(torch.arange(kh, dtype=f64) - kh // 2, torch.arange(p_h, dtype=f64)) / p_h
    eh = torch.polar(torch.ones_like(ang_h), -ang_h)  # (kh, P_h)
    cdt = dtype.to_complex()
    return ew.to(device=device, dtype=cdt), eh.to(device=device, dtype=cdt)


def _kernel_spectrum(weight: torch.Tensor, ph_size: int, pw_size: int) -> torch.Tensor:
    """Spectrum of the kernel centred at index 0 (tap ``(kh//2, kw//2)`` at (0, 0)).

    Returned in the transposed layout (C, Pw // 2 + 1, Ph) used by the spectra of the maps. Computed
    with two small matrix products instead of an FFT: per-plane FFT overhead (and non-smooth sizes)
    made rfft2 of C zero-padded kernels cost as much as the convolution itself.
    """
    c, _, kh, kw = weight.shape
    cdt = compute_dtype(weight.dtype)
    ew, eh = _kernel_dft_mats(kh, kw, ph_size, pw_size, cdt, str(weight.device))
    a = torch.matmul(weight.reshape(c * kh, kw).to(cdt.to_complex()), ew)  # (C*kh, pf)
    a = a.view(c, kh, -1).transpose(1, 2).contiguous()  # (C, pf, kh)
    return torch.matmul(a, eh)  # (C, pf, P_h)


def _spectrum(x: torch.Tensor, ph_size: int, pw_size: int) -> torch.Tensor:
    """2-D real FFT of (..., H, W) zero-padded to (Ph, Pw), returned transposed as (..., Pw // 2 + 1, Ph).

    Done as two 1-D passes with a transpose in between: MKL's strided transform along H is several times
    slower than a contiguous one, and the first pass only touches the H real rows, not the padded Ph.
    """
    a = torch.fft.rfft(x, n=pw_size, dim=-1)
    *lead, h, pf = a.shape
    # transpose and zero-pad along H in one strided copy (instead of a copy, then a padded copy)
    buf = a.new_empty((*lead, pf, ph_size))
    buf[..., :h] = a.transpose(-1, -2)
    buf[..., h:] = 0
    return torch.fft.fft(buf, dim=-1)


def _inverse(spec: torch.Tensor, h: int, w: int, pw_size: int) -> torch.Tensor:
    """Inverse of :func:`_spectrum`, keeping only the first (h, w) outputs."""
    a = torch.fft.ifft(spec, dim=-1)[..., :h]
    a = a.transpose(-1, -2).contiguous()
    return torch.fft.irfft(a, n=pw_size, dim=-1)[..., :w]


def _channel_chunk(n: int, c: int, ph: int, pf: int) -> int:
    per_channel = n * ph * pf * 8
    return max(1, min(c, _CHUNK_BYTES // max(per_channel, 1)))


def fft_forward(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Forward pass (no bias) by FFT; fp32 maths, result in ``x``'s dtype and layout."""
    n, c, h, w = x.shape
    kh, kw = weight.shape[-2:]
    ph, pw = fft_sizes(h, w, kh, kw)
    cdt = compute_dtype(x.dtype)
    # correlation = product with the conjugate kernel spectrum
    spec_w = _kernel_spectrum(weight, ph, pw).conj_physical()
    fmt = _layout(x)
    out = torch.empty((n, c, h, w), dtype=x.dtype, device=x.device, memory_format=fmt)
    step = _channel_chunk(n, c, ph, pw // 2 + 1)
    for c0 in range(0, c, step):
        c1 = min(c, c0 + step)
        spec = _spectrum(x[:, c0:c1].to(cdt), ph, pw)
        spec.mul_(spec_w[c0:c1])
        out[:, c0:c1] = _inverse(spec, h, w, pw)
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
    cdt = compute_dtype(grad.dtype)
    spec_w = _kernel_spectrum(weight, ph, pw) if need_input else None
    gx = None
    if need_input:
        gx = torch.empty((n, c, h, w), dtype=grad.dtype, device=grad.device, memory_format=_layout(grad))
    acc = torch.empty((c, pf, ph), dtype=cdt.to_complex(), device=grad.device) if need_weight else None
    step = _channel_chunk(n, c, ph, pf)
    if need_weight:
        step = max(1, step // 2)  # two spectra live at once
    for c0 in range(0, c, step):
        c1 = min(c, c0 + step)
        spec_g = _spectrum(grad[:, c0:c1].to(cdt), ph, pw)
        if need_weight:
            spec_x = _spectrum(x[:, c0:c1].to(cdt), ph, pw)
            # conj(G) * X, summed over the batch: the frequency-domain cross-correlation.
            _accumulate_cross_spectrum(spec_x, spec_g, acc[c0:c1])
        if need_input:
            spec_g.mul_(spec_w[c0:c1])
            gx[:, c0:c1] = _inverse(spec_g, h, w, pw)
    gw = None
    if need_weight:
        # only the kh x kw lags are needed: evaluate the inverse there instead of on the whole grid
        gw = _lag_inverse(acc, kh, kw, pw, fft_along_h=True).to(weight.dtype)
    return gx, gw


# Safety factor of :func:`fourier_error_bound` over the largest measured ratio (about 0.45).
ERROR_FACTOR = 4.0


def fourier_error_bound(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-channel bound (C,) on the absolute forward error of the Fourier routes (module docstring).

    ``ERROR_FACTOR * eps * max over images of ||x[n, c]||_2 * ||w[c]||_2``, with ``eps`` of the compute dtype.
    """
    eps = torch.finfo(compute_dtype(x.dtype)).eps
    xn = x.detach().double().flatten(2).norm(dim=2).amax(0)  # (C,)
    wn = weight.detach().double().flatten(1).norm(dim=1)  # (C,)
    return ERROR_FACTOR * eps * xn * wn


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
    if route == 'dft':
        return dft_forward(x, weight)
    if route in AT_ROUTES:
        return aten_forward(x, weight, route)
    raise ValueError(f'unknown CPU route {route!r}; expected one of {ROUTES}')


def run_input_grad(grad: torch.Tensor, weight: torch.Tensor, route: str) -> torch.Tensor:
    weight = crop_kernel(weight, grad.shape[-2], grad.shape[-1])
    if route == 'fft':
        return fft_backward(grad, None, weight, True, False)[0]
    if route == 'dft':
        return dft_forward(grad, weight, flip=True)
    if route in AT_ROUTES:
        return aten_input_grad(grad, weight, route)
    raise ValueError(f'unknown CPU route {route!r}; expected one of {ROUTES}')


def run_weight_grad(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, route: str) -> torch.Tensor:
    cropped = crop_kernel(weight, grad.shape[-2], grad.shape[-1])
    if route == 'fft':
        gw = fft_backward(grad, x, cropped, False, True)[1]
    elif route == 'dft':
        gw = dft_backward(grad, x, cropped, False, True)[1]
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


# ----------------------------------------------------------------------------------------------
# DFT-by-GEMM route
# ----------------------------------------------------------------------------------------------
# The same frequency-domain algorithm as the FFT route, but every 1-D transform is a matrix product
# with a (pruned) DFT matrix: the W-pass only reads the W real columns and the inverse only produces
# the H x W outputs that are kept, transform sizes need not be smooth (P = H + k//2 exactly), and MKL's
# (c)gemm runs near peak where batched small FFTs are dominated by per-transform overhead.
@lru_cache(maxsize=256)
def _dft_mats_cached(h: int, w: int, p_h: int, p_w: int, kh: int, kw: int, dtype: torch.dtype,
                     device: str):
    f64 = torch.float64
    pf = p_w // 2 + 1
    jw = torch.arange(pf, dtype=f64)
    # forward real DFT along W (only the first w inputs are non-zero): (w, 2*pf) with (re, im) interleaved
    ang_w = 2 * torch.pi * torch.outer(torch.arange(w, dtype=f64), jw) / p_w
    fw = torch.stack((torch.cos(ang_w), -torch.sin(ang_w)), dim=-1).reshape(w, 2 * pf)
    # forward complex DFT along H, transposed for right-multiplication: (h, p_h)
    ang_h = 2 * torch.pi * torch.outer(torch.arange(h, dtype=f64), torch.arange(p_h, dtype=f64)) / p_h
    fh_t = torch.polar(torch.ones_like(ang_h), -ang_h)
    # inverse complex DFT along H keeping the first h outputs: (p_h, h)
    gh_t = torch.polar(torch.ones_like(ang_h), ang_h).t().contiguous() / p_h
    # inverse real DFT along W keeping the first w outputs: (2*pf, w); Hermitian weights 1, 2, ..., 2, (1)
    cw = torch.full((pf,), 2.0, dtype=f64)
    cw[0] = 1.0
    if p_w % 2 == 0:
        cw[-1] = 1.0
    ang_iw = 2 * torch.pi * torch.outer(jw, torch.arange(w, dtype=f64)) / p_w
    gw = torch.stack((cw[:, None] * torch.cos(ang_iw), -cw[:, None] * torch.sin(ang_iw)), dim=1)
    gw = gw.reshape(2 * pf, w) / p_w
    # inverse transforms evaluated only at the kernel's lags, for the weight gradient
    lag_h = torch.arange(kh, dtype=f64) - kh // 2
    ang_lh = 2 * torch.pi * torch.outer(torch.arange(p_h, dtype=f64), lag_h) / p_h
    lh_t = torch.polar(torch.ones_like(ang_lh), ang_lh) / p_h  # (p_h, kh)
    lag_w = torch.arange(kw, dtype=f64) - kw // 2
    ang_lw = 2 * torch.pi * torch.outer(jw, lag_w) / p_w
    lw = torch.stack((cw[:, None] * torch.cos(ang_lw), -cw[:, None] * torch.sin(ang_lw)), dim=1)
    lw = lw.reshape(2 * pf, kw) / p_w
    cdt = dtype.to_complex()
    return (fw.to(device=device, dtype=dtype), fh_t.to(device=device, dtype=cdt), gh_t.to(device=device, dtype=cdt),
            gw.to(device=device, dtype=dtype), lh_t.to(device=device, dtype=cdt), lw.to(device=device, dtype=dtype))


def dft_sizes(h: int, w: int, kh: int, kw: int) -> Tuple[int, int]:
    return h + kh // 2, w + kw // 2


def _dft_mats(h: int, w: int, kh: int, kw: int, dtype: torch.dtype, device: torch.device):
    p_h, p_w = dft_sizes(h, w, kh, kw)
    return _dft_mats_cached(h, w, p_h, p_w, kh, kw, dtype, str(device))


def _dft_spectrum(x: torch.Tensor, fw: torch.Tensor, fh_t: torch.Tensor) -> torch.Tensor:
    """(..., H, W) real -> (..., Pf, P_h) complex (transposed spectrum)."""
    *lead, h, w = x.shape
    a = torch.matmul(x.reshape(-1, w), fw)  # (B*H, 2*pf)
    pf = fw.shape[1] // 2
    a = torch.view_as_complex(a.view(-1, h, pf, 2))  # (B, H, pf)
    a = a.transpose(1, 2).contiguous()  # (B, pf, H)
    a = torch.matmul(a.view(-1, h), fh_t)  # (B*pf, P_h)
    return a.view(*lead, pf, fh_t.shape[1])


def _dft_inverse(spec: torch.Tensor, gh_t: torch.Tensor, gw: torch.Tensor) -> torch.Tensor:
    """(..., Pf, P_h) complex -> (..., H, W) real, first (H, W) outputs only."""
    *lead, pf, p_h = spec.shape
    h = gh_t.shape[1]
    a = torch.matmul(spec.reshape(-1, p_h), gh_t)  # (B*pf, H)
    a = a.view(-1, pf, h).transpose(1, 2).contiguous()  # (B, H, pf)
    a = torch.view_as_real(a).reshape(-1, 2 * pf)
    y = torch.matmul(a, gw)  # (B*H, W)
    return y.view(*lead, h, gw.shape[1])


def _dft_chunk(n: int, c: int, h: int, pf: int, p_h: int) -> int:
    per_channel = n * pf * max(p_h, h) * 8 * 2
    return max(1, min(c, _CHUNK_BYTES // max(per_channel, 1)))


def dft_forward(x: torch.Tensor, weight: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """Forward (``flip=False``) or input-gradient (``flip=True``, x = output gradient) pass by DFT-GEMM."""
    n, c, h, w = x.shape
    kh, kw = weight.shape[-2:]
    cdt = compute_dtype(x.dtype)
    p_h, p_w = dft_sizes(h, w, kh, kw)
    fw, fh_t, gh_t, gw_m, _, _ = _dft_mats(h, w, kh, kw, cdt, x.device)
    spec_w = _kernel_spectrum(weight, p_h, p_w)
    if not flip:
        spec_w = spec_w.conj_physical()  # correlation
    out = torch.empty((n, c, h, w), dtype=x.dtype, device=x.device, memory_format=_layout(x))
    step = _dft_chunk(n, c, h, p_w // 2 + 1, p_h)
    for c0 in range(0, c, step):
        c1 = min(c, c0 + step)
        spec = _dft_spectrum(x[:, c0:c1].to(cdt), fw, fh_t)
        spec.mul_(spec_w[c0:c1])
        out[:, c0:c1] = _dft_inverse(spec, gh_t, gw_m)
    return out


def dft_backward(grad: torch.Tensor, x: Optional[torch.Tensor], weight: torch.Tensor, need_input: bool,
                 need_weight: bool) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Input and/or weight gradient by DFT-GEMM; one spectrum of ``grad`` serves both.

    The weight gradient's inverse transform is evaluated only at the kernel's kh x kw lags.
    """
    n, c, h, w = grad.shape
    kh, kw = weight.shape[-2:]
    cdt = compute_dtype(grad.dtype)
    p_h, p_w = dft_sizes(h, w, kh, kw)
    pf = p_w // 2 + 1
    fw, fh_t, gh_t, gw_m, _, _ = _dft_mats(h, w, kh, kw, cdt, grad.device)
    spec_w = _kernel_spectrum(weight, p_h, p_w) if need_input else None
    gx = None
    if need_input:
        gx = torch.empty((n, c, h, w), dtype=grad.dtype, device=grad.device, memory_format=_layout(grad))
    acc = torch.empty((c, pf, p_h), dtype=cdt.to_complex(), device=grad.device) if need_weight else None
    step = _dft_chunk(n, c, h, pf, p_h)
    if need_weight:
        step = max(1, step // 2)
    for c0 in range(0, c, step):
        c1 = min(c, c0 + step)
        spec_g = _dft_spectrum(grad[:, c0:c1].to(cdt), fw, fh_t)
        if need_weight:
            spec_x = _dft_spectrum(x[:, c0:c1].to(cdt), fw, fh_t)
            _accumulate_cross_spectrum(spec_x, spec_g, acc[c0:c1])
        if need_input:
            spec_g.mul_(spec_w[c0:c1])
            gx[:, c0:c1] = _dft_inverse(spec_g, gh_t, gw_m)
    gwt = _lag_inverse(acc, kh, kw, p_w).to(weight.dtype) if need_weight else None
    return gx, gwt
