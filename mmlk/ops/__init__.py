"""Custom operators: the large-kernel depthwise convolution."""
from .dwconv import LargeKernelDWConv2d, dwconv2d

__all__ = ['dwconv2d', 'LargeKernelDWConv2d']
