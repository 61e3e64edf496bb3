"""Large-kernel depthwise convolution: one dispatching op with fast CPU and Triton GPU paths.

RepLKNet (Ding et al., "Scaling Up Your Kernels to 31x31", CVPR 2022) relies on depthwise kernels up to
31x31, for which the stock PyTorch kernels are slow: on CPU, oneDNN's NCHW forward falls back to im2col for
K >= 13 and its backward-weights kernel is ~37x the forward at K=31 (shared docs, section 5). This module
exposes one op that picks, per pass, the fastest of several routes (each one a module of
:mod:`mmlk.ops.routes`, looked up by name in :mod:`mmlk.ops.route_table`):

* ``'torch'``: plain ``F.conv2d`` and its autograd, in the input's layout (the reference);
* ``'cl'``: aten kernels in channels_last for every pass;
* ``'fft'``: FFT-based forward / input gradient / weight gradient (fp32 maths, 2/3/5-smooth sizes);
* ``'dft'``: the same frequency-domain algorithm with pruned DFT matrices as GEMMs (no smooth-size
  padding, no per-plane FFT overhead; wins for mid-sized maps);
* ``'triton'``: the Triton kernels in ``kernels/triton_dwconv.py`` (CUDA, or CPU under ``TRITON_INTERPRET=1``);
* ``'auto'``: per pass, the route measured fastest ON THIS MACHINE by the runtime tuner (:mod:`mmlk.ops._tune`:
  timed once per problem at the first eager call, cached in memory and on disk, ``F.conv2d``'s own route
  included, so 'auto' never keeps a route measured slower than ``F.conv2d`` in the same layout and dtype; on
  CUDA Triton vs cuDNN in both layouts). Where tuning is off (``MMLK_DWCONV_TUNE=0``) or not allowed (inside
  torch.compile / export for a problem not tuned yet): on CPU the shipped table ``dwconv_cpu_table.json``
  (written by ``tools/analysis/benchmark_dwconv.py --write-table`` on one machine), on CUDA ``F.conv2d``.

Numerics: operands holding NaN / Inf never take a Fourier route (F.conv2d's NaN / Inf pattern is kept); the
Fourier routes' round-off model is stated in :mod:`mmlk.ops._fourier`; a backward recorded for double backward
(``create_graph=True``) runs through aten's differentiable ``convolution_backward``.

The op is registered with :func:`torch.library.custom_op` (``mmlk::dwconv2d`` and its backward) with an
autograd formula and fake implementations, so ``torch.compile`` and ``torch.export`` see one opaque node (and no
size of the input is compared on the way there: dynamic batch and spatial dims trace without guards);
plain eager calls take a lighter ``autograd.Function`` around the same executors (:mod:`mmlk.ops._executor`,
one forward and one backward for both paths), or ``F.conv2d`` itself under PyTorch's autograd when every pass
is its own kernel. TorchScript (also of a torch.fx graph that recorded the call), tracing and ONNX export take
the plain ``F.conv2d`` path, so an exported graph holds a standard ``Conv`` node.
"""
from typing import Dict, Optional, Tuple, Union

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.experimental.symbolic_shapes import statically_known_true

from . import _dispatch, _executor, _tune, route_table

# 'auto' and 'torch' choose among routes; every other impl names one route (registered as ``selectable``)
IMPLS = ('auto', 'torch') + route_table.selectable()
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
# Below this many multiply-adds (N*C*H*W*kh*kw) 'auto' is plain F.conv2d without any dispatch.
_TINY_MACS = 4_000_000


# ----------------------------------------------------------------------------------------------
# envelope and route selection
# ----------------------------------------------------------------------------------------------
def _static_envelope(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """The part of :func:`in_envelope` that reads no size of ``x`` (safe on symbolic sizes; the channel count
    is compared with the weight's, which F.conv2d's ``groups=C`` fixes anyway): 4-D, one filter per channel,
    odd kernel sides, matching floating dtypes and devices."""
    if x.dim() != 4 or weight.dim() != 4:
        return False
    kh, kw = weight.shape[-2:]
    return (weight.shape[0] == x.shape[1] and weight.shape[1] == 1 and kh % 2 == 1 and kw % 2 == 1
            and x.dtype == weight.dtype and x.dtype in _FLOAT_DTYPES and x.device == weight.device)


def in_envelope(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether (x, weight) is a depthwise conv the fast routes handle (else ``F.conv2d`` is used).

    The stride-1 / dilation-1 / 'same' padding part of the envelope is implied by the call itself;
    here: :func:`_static_envelope` and a non-empty input.
    """
    return _static_envelope(x, weight) and x.numel() > 0


def _check_impl(impl: str) -> None:
    if impl not in IMPLS:
        raise ValueError(f'dwconv2d: unknown impl {impl!r}; choose one of {IMPLS}')


def _routes(x: torch.Tensor, weight: torch.Tensor, impl: str, needs_grad: bool = True,
            tune: bool = False) -> Tuple[str, str, str]:
    """(forward, input-grad, weight-grad) route names for a concrete call.

    For 'auto', ``tune=True`` lets the tuner time the passes it has no choice for yet (eager calls only);
    with ``tune=False`` (inside the custom op, i.e. under torch.compile / export) only choices already made
    are used, and the shipped table (CPU) or cuDNN (CUDA) covers the rest.
    """
    if impl not in ('auto', 'torch'):
        reason = route_table.get(impl).supports(x)
        if reason is not None:
            raise RuntimeError(reason)
        return impl, impl, impl
    native = _executor.native(x)
    if impl == 'torch' or x.device.type not in ('cpu', 'cuda'):
        return native, native, native
    # auto: untuned passes take the shipped table on CPU and cuDNN on CUDA (Triton only when measured faster)
    if x.is_cuda:
        fallback: Tuple[str, str, str] = (native, native, native)
    else:
        n, _, h, w = x.shape
        kh, kw = weight.shape[-2:]
        fallback = _dispatch.select_routes(kh, kw, h, w, n, native == 'cl', x.shape[1])
    if x.dtype == torch.float64 or not _tune.enabled():
        return fallback
    passes = _tune.PASSES if needs_grad else ('fwd',)
    tuner = _tune.get_tuner()
    if tune and _tune.may_time():
        chosen = tuner.routes(x, weight, passes, _tune.candidates(x))
    else:
        chosen = tuner.cached(x, weight, passes)
    return tuple(chosen.get(p, fallback[i]) for i, p in enumerate(_tune.PASSES))  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# custom op registration (torch.compile / torch.export see one opaque node; the executors do the work)
# ----------------------------------------------------------------------------------------------
@torch.library.custom_op('mmlk::dwconv2d', mutates_args=())
def _dwconv2d_op(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], impl: str) -> torch.Tensor:
    if not in_envelope(x, weight):  # e.g. an empty batch, which the traced graph could not rule out
        return _executor.plain(x, weight, bias)
    return _executor.forward(x, weight, bias, _routes(x, weight, impl)[0])


@_dwconv2d_op.register_fake
def _dwconv2d_fake(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], impl: str) -> torch.Tensor:
    return torch.empty_like(x)


@torch.library.custom_op('mmlk::dwconv2d_backward', mutates_args=())
def _dwconv2d_backward_op(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, impl: str, need_input: bool,
                          need_weight: bool, need_bias: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    routes = _routes(x, weight, impl) if in_envelope(x, weight) else (_executor.native(x),) * 3
    gx, gw, gb = _executor.backward(grad, x, weight, routes, need_input, need_weight, need_bias)
    # custom ops cannot return None: an unneeded gradient comes back as an empty tensor
    return ((x.new_empty(0) if gx is None else gx), (weight.new_empty(0) if gw is None else gw),
            (weight.new_empty(0) if gb is None else gb))


@_dwconv2d_backward_op.register_fake
def _dwconv2d_backward_fake(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, impl: str, need_input: bool,
                            need_weight: bool, need_bias: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gx = torch.empty_like(x) if need_input else x.new_empty(0)
    gw = torch.empty_like(weight, memory_format=torch.contiguous_format) if need_weight else weight.new_empty(0)
    gb = weight.new_empty(weight.shape[0]) if need_bias else weight.new_empty(0)
    return gx, gw, gb


def _setup_context(ctx, inputs, output) -> None:
    x, weight, bias, impl = inputs
    ctx.impl = impl
    _executor.save_for_backward(ctx, x, weight, bias)


def _compiled_backward(impl: str) -> _executor.Compute:
    def compute(grad, x, weight, need_x, need_w, need_b):
        gx, gw, gb = _dwconv2d_backward_op(grad, x, weight, impl, need_x, need_w, need_b)
        return (gx if need_x else None), (gw if need_w else None), (gb if need_b else None)
    return compute


def _backward_formula(ctx, grad: torch.Tensor):
    gx, gw, gb = _executor.backward_formula(ctx, grad, _compiled_backward(ctx.impl))
    return gx, gw, gb, None


_dwconv2d_op.register_autograd(_backward_formula, setup_context=_setup_context)


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------
def _onnx_export_flag():
    """A cheap reader of "an ONNX export is running" (called on every eager call of the op).

    ``torch.onnx.is_in_onnx_export()`` re-imports two modules per call, which costs as much as the rest of
    the dispatch; read the same two flags directly when this torch has them, else use the public function.
    """
    try:
        from torch.onnx._internal.exporter import _flags
        from torch.onnx._internal.torchscript_exporter._globals import GLOBALS
        _ = GLOBALS.in_onnx_export or _flags._is_onnx_exporting
        return lambda: GLOBALS.in_onnx_export or _flags._is_onnx_exporting
    except Exception:  # noqa: BLE001 - another torch layout: fall back to the public API
        return getattr(torch.onnx, 'is_in_onnx_export', lambda: False)


_in_onnx_export = _onnx_export_flag()


def dwconv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
             impl: str = 'auto') -> torch.Tensor:
    """Depthwise, stride-1, 'same'-padded convolution with an odd (kh, kw) kernel.

    Computes ``F.conv2d(x, weight, bias, stride=1, padding=(kh // 2, kw // 2), groups=C)`` (the large
    depthwise kernel of RepLKNet, Ding et al., CVPR 2022) through the fastest measured route.

    Args:
        x: input of shape (N, C, H, W), contiguous or channels_last; fp32, fp16, bf16 (or fp64).
        weight: depthwise kernel of shape (C, 1, kh, kw) with odd kh and kw.
        bias: optional bias of shape (C,).
        impl: 'auto' (default), 'torch' (plain ``F.conv2d``), 'cl' (aten in channels_last), 'fft',
            'dft' or 'triton'. Inputs outside the envelope (not depthwise, mismatched dtypes) always use
            ``F.conv2d`` (and get its errors).

    Raises:
        ValueError: for an even kernel (no symmetric 'same' padding) or an unknown ``impl``.
        RuntimeError: F.conv2d's own error for a bias it rejects (shape, dtype, device).

    Returns:
        Tensor of shape (N, C, H, W) in the input's dtype and memory format.
    """
    if torch.jit.is_scripting():
        # TorchScript (also of a torch.fx graph that recorded this call) compiles only this branch
        kh, kw = weight.shape[-2], weight.shape[-1]
        return F.conv2d(x, weight, bias, 1, (kh // 2, kw // 2), 1, x.shape[1])
    return _dispatch_call(x, weight, bias, impl)


@torch.jit.unused
def _dispatch_call(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], impl: str) -> torch.Tensor:
    """:func:`dwconv2d` outside TorchScript. Under torch.compile / export nothing here reads a size of ``x``
    (sizes may be symbolic there: a comparison would guard or specialise them); the weight's sizes are static."""
    if torch.jit.is_tracing():
        # sizes are traced values and the traced graph is F.conv2d's (TorchScript tracing, the ONNX exporter)
        return _executor.plain(x, weight, bias)
    if torch.compiler.is_compiling():
        _check_arguments(x, weight, bias)
        if impl == 'torch':
            return _executor.plain(x, weight, bias)
        _check_impl(impl)
        # torch.compile / torch.export see one opaque, fake-able node; the ONNX exporter a plain conv
        if torch.onnx.is_in_onnx_export() or not _static_envelope(x, weight) or \
                (impl == 'auto' and _tiny(x, weight)):
            return _executor.plain(x, weight, bias)
        return _dwconv2d_op(x, weight, bias, impl)
    needs_grad = _needs_grad(x, weight, bias)
    if not _any_autocast() and not _in_onnx_export():
        # A call seen before (same impl, sizes, strides, dtypes, devices, bias and grad mode) was already checked
        # and decided: one dict lookup instead of the checks below, whose ~4 us are 2-5% of a 0.1-0.3 ms conv.
        key = (impl, x.shape, x.stride(), x.dtype, x.device, weight.shape, weight.stride(), weight.dtype,
               None if bias is None else (bias.shape, bias.dtype, bias.device), needs_grad)
        try:
            routes = _CALLS[key]
        except KeyError:
            routes = _decide_call(x, weight, bias, impl, needs_grad)
            if len(_CALLS) > 4096:
                _CALLS.clear()
            _CALLS[key] = routes
        if routes is None:
            return _executor.plain(x, weight, bias)
        return _executor.run(x, weight, bias, routes, needs_grad)
    _check_arguments(x, weight, bias)
    _check_impl(impl)
    if impl == 'torch' or bool(_in_onnx_export()) or (impl == 'auto' and _tiny(x, weight)):
        return _executor.plain(x, weight, bias)
    if x.device.type in ('cpu', 'cuda') and torch.is_autocast_enabled(x.device.type):
        # cast the way autocast casts F.conv2d, so that the fast routes see one dtype (not a mixed pair,
        # which would fall back to F.conv2d); the casts are differentiable, the gradients return in fp32
        dt = torch.get_autocast_dtype(x.device.type)
        x, weight = x.to(dt), weight.to(dt)
        bias = None if bias is None else bias.to(dt)
        needs_grad = _needs_grad(x, weight, bias)
    routes = _decide(x, weight, impl, needs_grad)
    if routes is None:
        return _executor.plain(x, weight, bias)
    return _executor.run(x, weight, bias, routes, needs_grad)


def _decide_call(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], impl: str,
                 needs_grad: bool) -> Optional[Tuple[str, str, str]]:
    """Routes of an eager call outside autocast (None: plain F.conv2d), after the argument checks (which raise for
    a bad call, so that an error is never memoised)."""
    _check_arguments(x, weight, bias)
    _check_impl(impl)
    if impl == 'torch' or (impl == 'auto' and _tiny(x, weight)):
        return None
    return _decide(x, weight, impl, needs_grad)


def _any_autocast() -> bool:
    """Whether autocast is on for any device (one C call; the per-device query needs ``x.device.type`` first)."""
    return _AUTOCAST_ANY()


_AUTOCAST_ANY = getattr(torch._C, '_is_any_autocast_enabled', None) or (
    lambda: torch.is_autocast_enabled('cpu') or torch.is_autocast_enabled('cuda'))
# eager calls already checked and decided (see _dispatch_call); cleared with the decisions
_CALLS: Dict[tuple, Optional[Tuple[str, str, str]]] = {}


def _tiny(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """A conv this small takes well under a millisecond in F.conv2d and no route was measured to win beyond timing
    noise there (dispatch MIN_GAIN): 'auto' skips the dispatch itself, whose cost is not negligible.

    False whenever a size is symbolic (torch.compile(dynamic=True), export with dynamic dims): comparing it would
    guard on it, so the opaque op, which decides on the real sizes, is kept instead.
    """
    if x.dim() != 4 or weight.dim() != 4:
        return False
    macs = x.numel() * weight.shape[-2] * weight.shape[-1]
    # a plain bool for concrete sizes; for symbolic ones, True only if it holds for every size the trace allows
    # (no guard is added)
    return statically_known_true(macs < _TINY_MACS)


def _check_arguments(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> None:
    """Reject what F.conv2d with the op's implicit 'same' padding would not compute correctly.

    An even kernel has no symmetric 'same' padding (``k // 2`` on both sides grows the map by one), so it is an
    error, not a silent fallback. A bias that F.conv2d would reject (wrong shape, dtype or device) is handed to
    F.conv2d so that the error is exactly F.conv2d's, whatever the route. Only the weight's and the bias's sizes
    are read (static under torch.compile / export).
    """
    if weight.dim() == 4 and (weight.shape[-2] % 2 == 0 or weight.shape[-1] % 2 == 0):
        raise ValueError(f'dwconv2d needs an odd kernel (stride-1 "same" padding k // 2 on both sides); got a '
                         f'{weight.shape[-2]}x{weight.shape[-1]} kernel. Use F.conv2d with explicit padding for '
                         'even kernels.')
    if bias is not None and x.dim() == 4 and weight.dim() == 4 and (
            bias.dim() != 1 or bias.shape[0] != weight.shape[0] or bias.dtype != x.dtype
            or bias.device != x.device) and not torch.is_autocast_enabled(x.device.type):
        _executor.plain(x, weight, bias)  # raises F.conv2d's own error
        raise RuntimeError(f'dwconv2d: bias of shape {tuple(bias.shape)} and dtype {bias.dtype} does not match '
                           f'the {x.shape[1]} channels / {x.dtype} of the input')


# torch.fx symbolic tracing (timm's FX feature extraction, torchvision's create_feature_extractor) records
# the op as one call instead of tracing into its shape-dependent dispatch; the graph runs it eagerly.
torch.fx.wrap('dwconv2d')

_DECISIONS: Dict[tuple, Optional[Tuple[str, str, str]]] = {}


def _decide(x: torch.Tensor, weight: torch.Tensor, impl: str,
            needs_grad: bool = True) -> Optional[Tuple[str, str, str]]:
    """Routes for this call (None: outside the envelope), memoised per shape/stride/dtype/device.

    The first eager call of a new problem is where the tuner times it (for the forward only when no gradient
    is needed, so that inference never pays for timing backward passes).
    """
    key = (impl, x.shape, x.stride(), x.dtype, x.device, weight.shape, weight.stride(), weight.dtype, weight.device,
           needs_grad)
    try:
        return _DECISIONS[key]
    except KeyError:
        pass
    routes = _routes(x, weight, impl, needs_grad, tune=True) if in_envelope(x, weight) else None
    if len(_DECISIONS) > 4096:
        _DECISIONS.clear()
    _DECISIONS[key] = routes
    return routes


def reset_decisions() -> None:
    """Forget every memoised route choice (in memory; the tuner's disk cache stays). For tests and tools."""
    _DECISIONS.clear()
    _CALLS.clear()
    _tune.get_tuner().clear()


def _needs_grad(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> bool:
    return torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                        or (bias is not None and bias.requires_grad))


class LargeKernelDWConv2d(nn.Conv2d):
    """``nn.Conv2d`` (depthwise, stride 1, 'same' padding) that runs through :func:`dwconv2d`.

    A drop-in depthwise ``nn.Conv2d``: the same ``weight`` / ``bias`` parameters and the true
    ``padding`` attribute (``(kh // 2, kw // 2)``), so re-parameterisation code and state dicts treat it
    as a plain convolution (RepLKNet, Ding et al., CVPR 2022, large-kernel branch).

    Args:
        channels: number of input (and output) channels.
        kernel_size: odd int or (kh, kw) tuple of odd ints.
        bias: whether the convolution has a bias. Defaults to False.
        impl: implementation passed to :func:`dwconv2d`. Defaults to 'auto'.
    """

    def __init__(self, channels: int, kernel_size: Union[int, Tuple[int, int]], bias: bool = False,
                 impl: str = 'auto') -> None:
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if len(ks) != 2 or any(int(k) != k or k < 1 or k % 2 == 0 for k in ks):
            raise ValueError(f'LargeKernelDWConv2d needs odd positive kernel sizes, got {kernel_size!r}')
        _check_impl(impl)
        super().__init__(channels, channels, ks, stride=1, padding=(ks[0] // 2, ks[1] // 2),
                         groups=channels, bias=bias)
        self.impl = impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            # TorchScript cannot compile the dispatching op; a scripted model runs the plain conv.
            return self._conv_forward(x, self.weight, self.bias)
        else:
            return self._forward_dispatch(x)

    @torch.jit.unused
    def _forward_dispatch(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != (1, 1) or self.dilation != (1, 1) or self.padding != (
                self.kernel_size[0] // 2, self.kernel_size[1] // 2) or self.padding_mode != 'zeros':
            # someone changed the conv after construction: stay exactly nn.Conv2d
            return super().forward(x)
        return dwconv2d(x, self.weight, self.bias, self.impl)

    def extra_repr(self) -> str:
        return super().extra_repr() + f', impl={self.impl!r}'
