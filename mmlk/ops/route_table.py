"""The route table of :func:`mmlk.ops.dwconv2d`: every way of computing one pass, by name.

A route is one :class:`Route` object registered by one module of :mod:`mmlk.ops.routes` (every module there is
imported on the first lookup, so adding a route is adding a file). The executor (:mod:`mmlk.ops._executor`),
the op (:mod:`mmlk.ops.dwconv`), the runtime tuner (:mod:`mmlk.ops._tune`) and the shipped table
(:mod:`mmlk.ops._dispatch`) only ever ask this table what a name means; none of them knows the routes
themselves (the executor calls aten directly only for the input's own layout, which is F.conv2d itself).

Passes are ``fwd`` (forward, no bias unless the route fuses it), ``gx`` (input gradient) and ``gw`` (weight
gradient). All tensors handed to a route are inside the op's envelope (4-D, depthwise, odd kernel, one dtype
and device) and the results come back as fresh tensors; the op fixes memory formats and dtypes afterwards.
"""
import importlib
from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, Optional, Tuple

import torch

from ._crop import crop_kernel, uncrop_weight_grad

PASSES = ('fwd', 'gx', 'gw')

Forward = Callable[[torch.Tensor, torch.Tensor, Optional[torch.Tensor]], torch.Tensor]
InputGrad = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
WeightGrad = Callable[[torch.Tensor, torch.Tensor, Tuple[int, ...]], torch.Tensor]
BothGrads = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]


def memory_format(t: torch.Tensor) -> torch.memory_format:
    """The memory format results keep for an input ``t``: channels_last only when ``t`` is channels_last and
    not also plainly contiguous (size-1 dimensions make both true; then NCHW is what F.conv2d returns)."""
    if not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _runs_anywhere(x: torch.Tensor) -> Optional[str]:
    return None


def _no_extra_check(x: torch.Tensor) -> bool:
    return True


@dataclass(frozen=True)
class Route:
    """One route: its passes and what it can run on.

    Attributes:
        name: the name in tuning caches, the shipped table and (when ``selectable``) ``dwconv2d(impl=...)``.
        order: position among the tuner's candidates and in ``IMPLS`` (the tuner times in this order when the
            table gives no prior, which decides what "the best so far" is while pruning).
        forward: ``(x, weight, bias) -> y``; gets ``bias`` only when ``fuses_bias``, else ``None``.
        input_grad: ``(grad, weight) -> grad_x``, or None when the route has no input-gradient pass.
        weight_grad: ``(grad, x, weight_shape) -> grad_w``, or None when it has no weight-gradient pass (the
            ``*_t`` aten routes: their weight gradient would be the plain kernel's, so they do not offer one).
        both_grads: optional ``(grad, x, weight) -> (grad_x, grad_w)`` computing the two gradients together
            cheaper than apart (the Fourier routes share one spectrum of ``grad``).
        auto_devices: device types on which ``impl='auto'`` times this route.
        selectable: whether the name is also an ``impl`` of :func:`mmlk.ops.dwconv2d`.
        supports: ``x -> None`` when the route can run on tensors like ``x``, else the reason it cannot.
        auto_ok: an extra ``x -> bool`` check before 'auto' times the route (e.g. Triton's self-check).
        crops: whether the route gets the kernel cropped to the taps that can reach the map (the Triton kernels
            skip padding-only taps themselves).
        finite_only: the route spreads one NaN / Inf over a whole plane (transforms mix every pixel into
            every coefficient), so non-finite operands take the direct aten route instead.
        fp32_maths: computes in fp32 whatever the input dtype, so its fp32 timings predict other dtypes; the
            tuner times these first for non-fp32 inputs.
        probe: its cost grows linearly with N * C and has no per-call setup, so a slice of the problem predicts
            a full call (the tuner probes such routes before running them at full size).
    """

    name: str
    order: int
    forward: Forward
    input_grad: Optional[InputGrad] = None
    weight_grad: Optional[WeightGrad] = None
    both_grads: Optional[BothGrads] = None
    auto_devices: FrozenSet[str] = frozenset({'cpu'})
    selectable: bool = False
    supports: Callable[[torch.Tensor], Optional[str]] = _runs_anywhere
    auto_ok: Callable[[torch.Tensor], bool] = _no_extra_check
    fuses_bias: bool = False
    crops: bool = True
    finite_only: bool = False
    fp32_maths: bool = False
    probe: bool = False

    @property
    def passes(self) -> Tuple[str, ...]:
        have = (True, self.input_grad is not None, self.weight_grad is not None)
        return tuple(p for p, ok in zip(PASSES, have) if ok)


_ROUTES: Dict[str, Route] = {}
_loaded = False


def register(route: Route) -> Route:
    """Add a route (called once by its module in :mod:`mmlk.ops.routes`); a second one of a name is an error."""
    if route.name in _ROUTES and _ROUTES[route.name] is not route:
        raise ValueError(f'mmlk.ops: a route named {route.name!r} is already registered')
    _ROUTES[route.name] = route
    return route


def _load() -> None:
    """Import every route module once (deferred: the route modules import this one)."""
    global _loaded
    if not _loaded:
        _loaded = True
        importlib.import_module(f'{__package__}.routes')


def get(name: str) -> Route:
    _load()
    try:
        return _ROUTES[name]
    except KeyError:
        raise ValueError(f'mmlk.ops: unknown route {name!r}; registered: {names()}') from None


def has(name: str) -> bool:
    _load()
    return name in _ROUTES


def names(device_type: Optional[str] = None, pass_name: Optional[str] = None) -> Tuple[str, ...]:
    """Registered route names in ``order``; only those 'auto' considers on ``device_type`` and that implement
    ``pass_name`` when given."""
    _load()
    routes = sorted(_ROUTES.values(), key=lambda r: r.order)
    return tuple(r.name for r in routes if (device_type is None or device_type in r.auto_devices)
                 and (pass_name is None or pass_name in r.passes))


def selectable() -> Tuple[str, ...]:
    """Route names that are also ``impl`` values of :func:`mmlk.ops.dwconv2d`."""
    return tuple(n for n in names() if _ROUTES[n].selectable)


# ----------------------------------------------------------------------------------------------
# running one pass through a route (the kernel crop happens here, once for every route that wants it)
# ----------------------------------------------------------------------------------------------
def _kernel_for(route: Route, weight: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return crop_kernel(weight, like.shape[-2], like.shape[-1]) if route.crops else weight


def _missing(route: Route, pass_name: str) -> ValueError:
    return ValueError(f'mmlk.ops: route {route.name!r} has no {pass_name!r} pass (it has {route.passes})')


def run_forward(x: torch.Tensor, weight: torch.Tensor, name: str,
                bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Forward pass through route ``name`` (a fresh tensor; bias added here unless the route fuses it)."""
    route = get(name)
    w = _kernel_for(route, weight, x)
    if route.fuses_bias:
        return route.forward(x, w, bias)
    y = route.forward(x, w, None)
    return y if bias is None else y.add_(bias.view(1, -1, 1, 1))


def run_input_grad(grad: torch.Tensor, weight: torch.Tensor, name: str) -> torch.Tensor:
    route = get(name)
    if route.input_grad is None:
        raise _missing(route, 'gx')
    return route.input_grad(grad, _kernel_for(route, weight, grad))


def run_weight_grad(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, name: str) -> torch.Tensor:
    route = get(name)
    if route.weight_grad is None:
        raise _missing(route, 'gw')
    shape = tuple(_kernel_for(route, weight, grad).shape)
    return uncrop_weight_grad(route.weight_grad(grad, x, shape), weight.shape)


def run_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, gx_name: str, gw_name: str,
                 need_input: bool, need_weight: bool) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """The gradients asked for, through the fused ``both_grads`` pass when one route computes both."""
    if need_input and need_weight and gx_name == gw_name and get(gx_name).both_grads is not None:
        route = get(gx_name)
        gx, gw = route.both_grads(grad, x, _kernel_for(route, weight, grad))
        return gx, uncrop_weight_grad(gw, weight.shape)
    gx = run_input_grad(grad, weight, gx_name) if need_input else None
    gw = run_weight_grad(grad, x, weight, gw_name) if need_weight else None
    return gx, gw
