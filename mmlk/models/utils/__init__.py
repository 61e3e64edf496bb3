from .reparam import fuse_conv_bn, pad_kernel

__all__ = ['fuse_conv_bn', 'pad_kernel']
