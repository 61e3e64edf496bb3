# Merged (deploy) form of ../replknet-31b_in21k-pre_32xb32_in1k-384.py:
# each large-kernel conv-BN, with its parallel small-kernel conv-BN where the arch has one, is
# re-parameterised into one depthwise conv (`large_kernel.lkb_reparam`, the official merged layout).
# Builds the inference model directly, e.g. to evaluate merged weights
# (tools/model_converters/reparameterize.py writes them from training-form ones).
_base_ = ['../replknet-31b_in21k-pre_32xb32_in1k-384.py']

model = dict(backbone=dict(deploy=True, init_cfg=None))

# No training-only hooks: the EMA hook would swap in a checkpoint's `ema_state_dict`, which holds
# training-form keys the merged model does not have (KeyError in the host's tools/test.py).
custom_hooks = []
