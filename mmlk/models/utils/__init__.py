from .reparam import fuse_conv_bn, pad_kernel
from .validation import compare_state_dict, format_state_dict_mismatch, normalize_out_indices, state_prefix

__all__ = ['fuse_conv_bn', 'pad_kernel', 'normalize_out_indices', 'compare_state_dict',
           'format_state_dict_mismatch', 'state_prefix']
