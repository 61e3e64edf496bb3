"""Large-kernel depthwise convolution (placeholder: plain ``F.conv2d`` until the fast op lands).

The public interface is fixed; the implementation behind ``impl='auto'`` is being written
(see issue #5). Backbones depend only on ``LargeKernelDWConv2d`` and ``dwconv2d``.
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F


def dwconv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
             impl: str = 'auto') -> torch.Tensor:
    """Depthwise, stride-1, 'same'-padded convolution with an odd (kh, kw) kernel."""
    kh, kw = weight.shape[-2:]
    return F.conv2d(x, weight, bias, 1, (kh // 2, kw // 2), 1, x.shape[1])


class LargeKernelDWConv2d(nn.Conv2d):
    """``nn.Conv2d`` (depthwise, stride 1, 'same' padding) that runs through :func:`dwconv2d`."""

    def __init__(self, channels: int, kernel_size: Union[int, Tuple[int, int]], bias: bool = False,
                 impl: str = 'auto') -> None:
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        super().__init__(channels, channels, ks, stride=1, padding=(ks[0] // 2, ks[1] // 2),
                         groups=channels, bias=bias)
        self.impl = impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dwconv2d(x, self.weight, self.bias, self.impl)
