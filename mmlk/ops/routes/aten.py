"""Routes ``nchw``, ``cl``, ``nchw_t`` and ``cl_t``: aten's own convolution kernels (oneDNN, cuDNN).

``nchw`` / ``cl`` run each pass in that memory layout (``cl`` = channels_last); in the input's own layout
that is exactly ``F.conv2d``, the reference every other route must beat. The ``*_t`` ("transposed") routes
use that, for an odd kernel with 'same' padding, the forward pass is the input-gradient pass with the kernel
flipped (and vice versa): on CPUs the two aten kernels are fast for different shapes, so each pass can
borrow the other's. Their weight gradient would be the plain kernel's, so they do not offer one.
"""
from typing import Tuple

import torch
import torch.nn.functional as F

from ..route_table import Route, memory_format, register


def _work(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def _same(weight_shape: Tuple[int, ...]) -> list:
    return [weight_shape[-2] // 2, weight_shape[-1] // 2]


def _correlate(x: torch.Tensor, weight: torch.Tensor, channels_last: bool) -> torch.Tensor:
    xs = x.contiguous(memory_format=_work(channels_last))
    y = F.conv2d(xs, weight, None, 1, _same(weight.shape), 1, x.shape[1])
    return y.contiguous(memory_format=memory_format(x))


def _conv_transpose(g: torch.Tensor, weight: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """aten's input-gradient kernel applied to ``g`` (a correlation with the flipped kernel)."""
    gs = g.contiguous(memory_format=_work(channels_last))
    out = torch.ops.aten.convolution_backward(gs, gs, weight, None, [1, 1], _same(weight.shape), [1, 1], False,
                                              [0, 0], g.shape[1], [True, False, False])[0]
    return out.contiguous(memory_format=memory_format(g))


def _weight_grad(grad: torch.Tensor, x: torch.Tensor, shape: Tuple[int, ...], channels_last: bool) -> torch.Tensor:
    fmt = _work(channels_last)
    w_meta = torch.empty(shape, dtype=x.dtype, device=x.device)
    return torch.ops.aten.convolution_backward(grad.contiguous(memory_format=fmt), x.contiguous(memory_format=fmt),
                                               w_meta, None, [1, 1], _same(shape), [1, 1], False, [0, 0],
                                               x.shape[1], [False, True, False])[1]


def _flipped(w: torch.Tensor) -> torch.Tensor:
    return w.flip((-2, -1)).contiguous()


def _make(name: str, order: int, cl: bool, transposed: bool) -> Route:
    if transposed:
        # corr(x, w) == the input gradient of a conv with the flipped kernel, evaluated at grad_out = x
        return Route(name=name, order=order, probe=True,
                     forward=lambda x, w, b: _conv_transpose(x, _flipped(w), cl),
                     input_grad=lambda g, w: _correlate(g, w.flip((-2, -1)), cl))
    return Route(name=name, order=order, probe=True, selectable=(name == 'cl'),
                 auto_devices=frozenset({'cpu', 'cuda'}),
                 forward=lambda x, w, b: _correlate(x, w, cl),
                 input_grad=lambda g, w: _conv_transpose(g, w, cl),
                 weight_grad=lambda g, x, shape: _weight_grad(g, x, shape, cl))


ROUTES = tuple(register(_make(name, order, cl, t)) for name, order, cl, t in (
    ('nchw', 0, False, False), ('cl', 10, True, False), ('nchw_t', 20, False, True), ('cl_t', 30, True, True)))
