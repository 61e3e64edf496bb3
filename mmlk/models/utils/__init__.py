from .conv import LARGE_KERNEL_MIN, conv_from_weights, conv_like, make_conv
from .reparam import fuse_conv_bn, pad_kernel, reparameterize, require_batchnorm

__all__ = ['LARGE_KERNEL_MIN', 'make_conv', 'conv_from_weights', 'conv_like', 'fuse_conv_bn', 'pad_kernel',
           'reparameterize', 'require_batchnorm']
