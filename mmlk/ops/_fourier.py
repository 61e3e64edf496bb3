"""The frequency-domain algorithm shared by the ``fft`` and ``dft`` routes, written once.

Both routes compute the circular correlation on a ``P >= H + k // 2`` grid, the smallest size for which no
wrapped-around term reaches the ``H`` outputs that are kept (for all three passes). They differ only in how a
map becomes a spectrum and back, which a :class:`Plan` supplies:

* forward / input gradient: spectrum of the map, times the (conjugate, for the correlation) kernel spectrum,
  inverse, chunked over channels so that one chunk of spectra stays in cache;
* weight gradient: ``conj(G) * X`` summed over the batch in the frequency domain, then one inverse per
  channel evaluated only at the kernel's lags (this is where oneDNN is weakest: its fast backward-weights
  kernels reject kernel widths > 14, see shared docs, section 5); with both gradients asked for, one
  spectrum of the output gradient serves both.

Kernel spectra are always computed with two small GEMMs (cheaper than C zero-padded 2-D transforms).

Error model (fp32 maths): a transform mixes every pixel of a plane into every coefficient, so its round-off is
not local. For each (image, channel) plane the absolute error of EVERY output is bounded by about
``eps_fp32 * ||x_plane||_2 * ||w_c||_2`` (measured 0.15-0.45 times that on the RepLKNet shapes, for spikes up
to 1e8; :func:`fourier_error_bound` returns 4 times it and the tests hold the routes to it against float64).
A direct route's error is instead relative to the magnitudes inside the kernel's footprint. The two agree for
inputs of ordinary dynamic range; with a few huge values among small ones (e.g. ``x[5, 5] = 1e6`` in a 40x40
plane gives ~0.04 absolute error at pixels the value cannot reach) use a direct route (``impl='torch'`` or
``'cl'``). Non-finite values are never sent through a transform (the routes register ``finite_only``), so
they keep F.conv2d's NaN / Inf pattern.
"""
from functools import lru_cache
from typing import Optional, Tuple

import torch

from .route_table import Route, memory_format

# Bytes of complex spectrum one chunk may hold; about L2-sized chunks were fastest here (2-core EPYC).
CHUNK_BYTES = 2 * 1024 * 1024
# Safety factor of :func:`fourier_error_bound` over the largest measured ratio (about 0.45).
ERROR_FACTOR = 4.0


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Transforms run in fp32 (fp64 for fp64 inputs, e.g. gradcheck): half-precision spectra lose the signal."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def fourier_error_bound(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-channel bound (C,) on the absolute forward error of the Fourier routes (module docstring).

    ``ERROR_FACTOR * eps * max over images of ||x[n, c]||_2 * ||w[c]||_2``, with ``eps`` of the compute dtype.
    """
    eps = torch.finfo(compute_dtype(x.dtype)).eps
    xn = x.detach().double().flatten(2).norm(dim=2).amax(0)  # (C,)
    wn = weight.detach().double().flatten(1).norm(dim=1)  # (C,)
    return ERROR_FACTOR * eps * xn * wn


class Plan:
    """How one route turns (..., H, W) maps into (..., P_w // 2 + 1, P_h) spectra and back, for one problem.

    Spectra are kept transposed (W-frequency before H-frequency): the H pass then runs on contiguous rows.
    Subclasses set ``p_h`` / ``p_w`` and implement :meth:`spectrum`, :meth:`inverse` and :meth:`chunk`.
    """

    p_h: int
    p_w: int
    # whether the weight gradient's H-inverse is a full inverse FFT (cheap at 2/3/5-smooth sizes) rather than
    # a GEMM evaluated at the kh lags only
    lags_by_fft = False

    def __init__(self, h: int, w: int, kh: int, kw: int, dtype: torch.dtype, device: torch.device) -> None:
        self.h, self.w, self.kh, self.kw = h, w, kh, kw
        self.dtype, self.device = dtype, device

    @property
    def p_f(self) -> int:
        return self.p_w // 2 + 1

    def spectrum(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def inverse(self, spec: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def chunk(self, n: int, c: int) -> int:
        """Channels per chunk for a batch of ``n``, so that one chunk of spectra stays about cache-sized."""
        raise NotImplementedError


def _chunks(c: int, step: int):
    for c0 in range(0, c, step):
        yield c0, min(c, c0 + step)


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


def kernel_spectrum(weight: torch.Tensor, p_h: int, p_w: int) -> torch.Tensor:
    """Spectrum (C, P_w // 2 + 1, P_h) of the kernel centred at index 0 (tap ``(kh//2, kw//2)`` at (0, 0)).

    Two small matrix products instead of an FFT: per-plane FFT overhead (and non-smooth sizes) made rfft2 of C
    zero-padded kernels cost as much as the convolution itself.
    """
    c, _, kh, kw = weight.shape
    cdt = compute_dtype(weight.dtype)
    ew, eh = _kernel_dft_mats(kh, kw, p_h, p_w, cdt, str(weight.device))
    a = torch.matmul(weight.reshape(c * kh, kw).to(cdt.to_complex()), ew)  # (C*kh, pf)
    a = a.view(c, kh, -1).transpose(1, 2).contiguous()  # (C, pf, kh)
    return torch.matmul(a, eh)  # (C, pf, P_h)


def hermitian_weights(p_w: int) -> torch.Tensor:
    """Weights 1, 2, ..., 2, (1) of the one-sided spectrum in an inverse real DFT of length ``p_w`` (float64)."""
    cw = torch.full((p_w // 2 + 1,), 2.0, dtype=torch.float64)
    cw[0] = 1.0
    if p_w % 2 == 0:
        cw[-1] = 1.0
    return cw


def inverse_real_dft(p_w: int, points: torch.Tensor) -> torch.Tensor:
    """(2 * (P_w // 2 + 1), len(points)) real matrix: the inverse real DFT of (re, im)-interleaved one-sided
    spectra, evaluated at the given output positions (float64)."""
    pf = p_w // 2 + 1
    cw = hermitian_weights(p_w)
    ang = 2 * torch.pi * torch.outer(torch.arange(pf, dtype=torch.float64), points.to(torch.float64)) / p_w
    m = torch.stack((cw[:, None] * torch.cos(ang), -cw[:, None] * torch.sin(ang)), dim=1)
    return m.reshape(2 * pf, len(points)) / p_w


@lru_cache(maxsize=256)
def _lag_mats(p_h: int, p_w: int, kh: int, kw: int, dtype: torch.dtype, device: str):
    """Inverse 2-D DFT evaluated only at the kernel's lags ``[-k//2, k//2]``.

    Returns ``lh_t`` (P_h, kh) complex, applied along H, and ``lw`` (2 * (P_w // 2 + 1), kw) real, applied
    along W to (re, im)-interleaved spectra.
    """
    f64 = torch.float64
    lag_h = torch.arange(kh, dtype=f64) - kh // 2
    ang_lh = 2 * torch.pi * torch.outer(torch.arange(p_h, dtype=f64), lag_h) / p_h
    lh_t = torch.polar(torch.ones_like(ang_lh), ang_lh) / p_h
    lw = inverse_real_dft(p_w, torch.arange(kw, dtype=f64) - kw // 2)
    return lh_t.to(device=device, dtype=dtype.to_complex()), lw.to(device=device, dtype=dtype)


def _lag_inverse(acc: torch.Tensor, kh: int, kw: int, p_w: int, by_fft: bool) -> torch.Tensor:
    """(C, Pf, P_h) cross-spectrum -> (C, 1, kh, kw) correlation at the kernel's lags.

    Along W the inverse is a small real GEMM evaluated at the kw lags only. Along H it is either a GEMM at the
    kh lags (any P_h) or, for smooth P_h, a full inverse FFT followed by picking the kh lag rows, which is
    cheaper once kh is more than a few taps.
    """
    c, pf, p_h = acc.shape
    lh_t, lw = _lag_mats(p_h, p_w, kh, kw, acc.real.dtype, str(acc.device))
    if by_fft:
        full = torch.fft.ifft(acc, dim=-1)  # (C, pf, P_h); lag t sits at index t mod P_h
        lags = torch.arange(kh, device=acc.device) - kh // 2
        a = full.index_select(-1, lags % p_h)  # (C, pf, kh)
    else:
        a = torch.matmul(acc.reshape(c * pf, p_h), lh_t).view(c, pf, kh)
    a = torch.view_as_real(a.transpose(1, 2).contiguous()).reshape(c * kh, 2 * pf)
    return torch.matmul(a, lw).view(c, 1, kh, kw)


def _accumulate_cross_spectrum(spec_x: torch.Tensor, spec_g: torch.Tensor, out: torch.Tensor) -> None:
    """out = sum over the batch of conj(G) * X (the frequency-domain cross-correlation); clobbers spec_x."""
    if spec_x.shape[0] == 1:
        torch.mul(spec_x[0], spec_g[0].conj(), out=out)
    else:
        spec_x.mul_(spec_g.conj())
        torch.sum(spec_x, dim=0, out=out)


def correlate(plan_cls: type, x: torch.Tensor, weight: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """Forward pass (``flip=False``: correlation with ``weight``) or input gradient (``flip=True``, ``x`` the
    output gradient: correlation with the kernel rotated by 180 degrees, i.e. a product with the kernel
    spectrum itself). No bias; the result has ``x``'s dtype and layout."""
    n, c, h, w = x.shape
    kh, kw = weight.shape[-2:]
    cdt = compute_dtype(x.dtype)
    plan: Plan = plan_cls(h, w, kh, kw, cdt, x.device)
    spec_w = kernel_spectrum(weight, plan.p_h, plan.p_w)
    if not flip:
        spec_w = spec_w.conj_physical()
    out = torch.empty((n, c, h, w), dtype=x.dtype, device=x.device, memory_format=memory_format(x))
    for c0, c1 in _chunks(c, plan.chunk(n, c)):
        spec = plan.spectrum(x[:, c0:c1].to(cdt))
        spec.mul_(spec_w[c0:c1])
        out[:, c0:c1] = plan.inverse(spec)
    return out


def gradients(plan_cls: type, grad: torch.Tensor, x: torch.Tensor, kernel_shape: Tuple[int, ...],
              weight: Optional[torch.Tensor] = None) -> Tuple[Optional[torch.Tensor], torch.Tensor]:
    """The weight gradient, and the input gradient too when ``weight`` is given, one spectrum of ``grad``
    serving both.

    The weight gradient is the cross-correlation of ``grad`` and ``x`` at lags ``[-k//2, k//2]``, summed over
    the batch in the frequency domain before a single inverse per channel.
    """
    n, c, h, w = grad.shape
    kh, kw = kernel_shape[-2:]
    cdt = compute_dtype(grad.dtype)
    plan: Plan = plan_cls(h, w, kh, kw, cdt, grad.device)
    spec_w = None if weight is None else kernel_spectrum(weight, plan.p_h, plan.p_w)
    gx = None
    if spec_w is not None:
        gx = torch.empty((n, c, h, w), dtype=grad.dtype, device=grad.device, memory_format=memory_format(grad))
    acc = torch.empty((c, plan.p_f, plan.p_h), dtype=cdt.to_complex(), device=grad.device)
    step = max(1, plan.chunk(n, c) // 2)  # two spectra live at once
    for c0, c1 in _chunks(c, step):
        spec_g = plan.spectrum(grad[:, c0:c1].to(cdt))
        spec_x = plan.spectrum(x[:, c0:c1].to(cdt))
        _accumulate_cross_spectrum(spec_x, spec_g, acc[c0:c1])
        if spec_w is not None:
            spec_g.mul_(spec_w[c0:c1])
            gx[:, c0:c1] = plan.inverse(spec_g)
    gw = _lag_inverse(acc, kh, kw, plan.p_w, plan.lags_by_fft).to(grad.dtype)
    return gx, gw


def make_route(name: str, order: int, plan_cls: type) -> Route:
    """The route-table entry of a Fourier route: every pass is the shared skeleton above with ``plan_cls``."""
    return Route(
        name=name, order=order, selectable=True,
        forward=lambda x, w, b: correlate(plan_cls, x, w),
        input_grad=lambda g, w: correlate(plan_cls, g, w, flip=True),
        weight_grad=lambda g, x, shape: gradients(plan_cls, g, x, shape)[1],
        both_grads=lambda g, x, w: gradients(plan_cls, g, x, tuple(w.shape), w),  # type: ignore[arg-type]
        finite_only=True, fp32_maths=True)
