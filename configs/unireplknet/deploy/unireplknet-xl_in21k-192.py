# Merged (deploy) form of ../unireplknet-xl_in21k-192.py: Dilated Reparam Blocks, BNs and GRN bias merged
# (UniRepLKNet's reparameterize_unireplknet layout). Builds the inference model directly, e.g. to evaluate
# merged weights (tools/model_converters/reparameterize.py writes them from training-form ones).
_base_ = ['../unireplknet-xl_in21k-192.py']

model = dict(backbone=dict(deploy=True, init_cfg=None))

# No EMA hook: a checkpoint's ema_state_dict holds training-form keys the merged model lacks.
custom_hooks = []
