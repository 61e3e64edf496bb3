"""Running the passes of :func:`mmlk.ops.dwconv2d` through chosen routes: ONE forward, ONE backward.

This module sits beneath the op (:mod:`mmlk.ops.dwconv`: route choice, the ``torch.library`` custom op, the
public API) and the tuner (:mod:`mmlk.ops._tune`, which times these very functions), and above the route
table (:mod:`mmlk.ops.route_table`). It imports neither of them, so there is no import circle.

"Never slower by construction" lives here. A pass whose route is the input's own layout (``native``) is not
a route at all: it is the aten kernel that ``F.conv2d`` and its autograd node (``ConvolutionBackward0``) call,
called the same way:

* the forward is ``F.conv2d(x, weight, bias, 1, (kh // 2, kw // 2), 1, C)`` itself, bias included;
* the aten gradients of one backward are ONE ``aten.convolution_backward`` call whose ``output_mask`` asks for
  exactly the passes that are aten's (input and / or weight gradient, and the bias gradient together with an
  aten weight gradient, as aten's autograd computes it), on the output gradient made contiguous in the input's
  memory format (the copy aten's backend would make itself; none when it already is).

Only the other routes (Fourier, Triton, aten in the other layout) go through :mod:`mmlk.ops.route_table`.
"""
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F

from . import route_table

Routes = Tuple[str, str, str]
Grads = Tuple[Optional[torch.Tensor], Optional[torch.Tensor], Optional[torch.Tensor]]
memory_format = route_table.memory_format


def native(x: torch.Tensor) -> str:
    """The route name of aten's own kernels in ``x``'s layout (``'cl'`` for channels_last, else ``'nchw'``)."""
    return 'cl' if memory_format(x) == torch.channels_last else 'nchw'


def plain(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``F.conv2d`` with the op's implicit stride-1, 'same', depthwise arguments."""
    kh, kw = weight.shape[-2], weight.shape[-1]
    return F.conv2d(x, weight, bias, 1, (kh // 2, kw // 2), 1, x.shape[1])


def aten_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                  mask: Tuple[bool, bool, bool]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """aten's convolution backward as ``F.conv2d``'s autograd node calls it (``mask``: input, weight, bias)."""
    kh, kw = weight.shape[-2], weight.shape[-1]
    return torch.ops.aten.convolution_backward(grad, x, weight, [weight.shape[0]] if mask[2] else None, [1, 1],
                                               [kh // 2, kw // 2], [1, 1], False, [0, 0], x.shape[1], list(mask))


def _finite(t: torch.Tensor) -> bool:
    """Whether every element of ``t`` is finite, with one reduction and no tensor-sized temporary (a NaN / Inf
    makes the sum non-finite; a finite tensor whose sum overflows only costs a detour through aten)."""
    return bool(torch.isfinite(t.sum()))


def _direct_if_nonfinite(route: str, native_route: str, *tensors: torch.Tensor) -> str:
    """A Fourier route spreads one NaN / Inf over the whole plane (every output depends on every input through
    the transform); F.conv2d confines it to the kernel's footprint. Non-finite operands therefore take aten's
    kernel in the input's layout, which reproduces F.conv2d's pattern exactly."""
    if route != native_route and route_table.get(route).finite_only and not all(_finite(t) for t in tensors):
        return native_route
    return route


def forward(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], route: str) -> torch.Tensor:
    """The forward pass through ``route``; the native route is ``F.conv2d`` itself."""
    nat = native(x)
    route = _direct_if_nonfinite(route, nat, x, weight)
    if route == nat:
        return plain(x, weight, bias)
    y = route_table.run_forward(x, weight, route, bias)
    return y.contiguous(memory_format=memory_format(x))


def backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, routes: Routes, need_input: bool,
             need_weight: bool, need_bias: bool = False) -> Grads:
    """The gradients asked for, through ``routes`` (forward, input-grad, weight-grad names).

    ``x`` is the forward input, or a stand-in of its shape, dtype and memory format when the weight gradient is
    not needed (only its layout is read then). Aten passes run as one ``convolution_backward`` call (module
    docstring); the bias gradient rides with an aten weight gradient, else it is ``grad.sum((0, 2, 3))``.
    """
    fmt = memory_format(x)
    grad = grad.contiguous(memory_format=fmt)
    nat = native(x)
    gx_route = _direct_if_nonfinite(routes[1], nat, grad, weight) if need_input else nat
    gw_route = _direct_if_nonfinite(routes[2], nat, grad, x) if need_weight else nat
    aten_x, aten_w = need_input and gx_route == nat, need_weight and gw_route == nat
    aten_b = need_bias and aten_w
    gx = gw = gb = None
    if aten_x or aten_w:
        ax, aw, ab = aten_backward(grad, x, weight, (aten_x, aten_w, aten_b))
        gx, gw, gb = (ax if aten_x else None), (aw if aten_w else None), (ab if aten_b else None)
    other_x, other_w = need_input and not aten_x, need_weight and not aten_w
    if other_x or other_w:
        rx, rw = route_table.run_backward(grad, x, weight, gx_route, gw_route, other_x, other_w)
        gx = rx.contiguous(memory_format=fmt) if other_x else gx
        gw = rw.to(weight.dtype).contiguous() if other_w else gw
    if need_bias and gb is None:
        gb = grad.sum((0, 2, 3))
    return gx, gw, gb


def differentiable_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, need_input: bool,
                            need_weight: bool, need_bias: bool) -> Grads:
    """Every gradient through aten's ``convolution_backward``, which has a derivative (double backward).

    Used when the backward itself is recorded (``create_graph=True``): the fast routes write into preallocated
    buffers (``out=``), which autograd cannot differentiate.
    """
    gx, gw, gb = aten_backward(grad, x, weight, (need_input, need_weight, need_bias))
    return (gx if need_input else None), (gw if need_weight else None), (gb if need_bias else None)


def backward_is_recorded(*tensors: Optional[torch.Tensor]) -> bool:
    """Whether this backward runs under ``create_graph=True`` with something to differentiate."""
    return torch.is_grad_enabled() and not torch.compiler.is_compiling() and any(
        t is not None and t.requires_grad for t in tensors)


# ----------------------------------------------------------------------------------------------
# the one autograd formula, shared by the eager Function below and the custom op's registered autograd
# ----------------------------------------------------------------------------------------------
# (grad, x or its stand-in, weight, need_input, need_weight, need_bias) -> (gx, gw, gb)
Compute = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, bool, bool, bool], Grads]


def save_for_backward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> None:
    """Keep what the backward reads: the input only when the weight gradient is needed (else a stand-in of its
    layout is made from the output gradient), the weight always (input gradient, aten's argument)."""
    need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    ctx.need = (need_x, need_w, bias is not None and ctx.needs_input_grad[2])
    ctx.x_format = memory_format(x)
    ctx.save_for_backward(x if need_w else None, weight)


def backward_formula(ctx, grad: torch.Tensor, compute: Compute) -> Grads:
    """(gx, gw, gb) for a ``ctx`` filled by :func:`save_for_backward`, through ``compute`` (the executor in
    eager mode, the backward custom op under torch.compile), or through aten when the backward is recorded."""
    x, weight = ctx.saved_tensors
    need_x, need_w, need_b = ctx.need
    if not (need_x or need_w or need_b):
        return None, None, None
    # the stand-in for an input that was not kept: the output gradient in the input's memory format
    x_arg = grad.contiguous(memory_format=ctx.x_format) if x is None else x
    if backward_is_recorded(grad, x, weight):
        return differentiable_backward(grad, x_arg, weight, need_x, need_w, need_b)
    return compute(grad, x_arg, weight, need_x, need_w, need_b)


class EagerDWConv(torch.autograd.Function):
    """Eager-mode autograd around :func:`forward` / :func:`backward` (cheaper to dispatch than the custom op).

    The custom op ``mmlk::dwconv2d`` is what torch.compile / torch.export trace; in eager mode its dispatcher
    round trip costs ~0.1 ms per call, comparable to a whole small depthwise conv. Used only when some pass is
    not aten's; otherwise the op is plain ``F.conv2d`` under PyTorch's own autograd.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                routes: Routes) -> torch.Tensor:
        ctx.routes = routes
        save_for_backward(ctx, x, weight, bias)
        return forward(x, weight, bias, routes[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        routes = ctx.routes
        gx, gw, gb = backward_formula(
            ctx, grad, lambda g, x, w, nx, nw, nb: backward(g, x, w, routes, nx, nw, nb))
        return gx, gw, gb, None


def run(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], routes: Routes,
        needs_grad: bool) -> torch.Tensor:
    """The op in eager mode for decided ``routes``: plain ``F.conv2d`` (PyTorch's own autograd) when every pass
    that will run is aten's in the input's layout, else the autograd Function around the executors."""
    nat = native(x)
    if routes[0] == nat and (not needs_grad or routes[1] == routes[2] == nat):
        return plain(x, weight, bias)
    return EagerDWConv.apply(x, weight, bias, routes)
