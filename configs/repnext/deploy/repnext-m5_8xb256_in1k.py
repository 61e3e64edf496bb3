# RepNeXt-M5 in its merged (deploy) form: every re-parameterisable branch of the backbone folded into
# single convolutions and the two classifier heads into one Linear. Builds the inference model directly,
# e.g. to evaluate merged weights (tools/model_converters/reparameterize.py writes them from training ones).
_base_ = ['../repnext-m5_8xb256_in1k.py']

model = dict(backbone=dict(deploy=True), head=dict(deploy=True))

# No training-only hooks: the EMA hook would swap in a checkpoint's `ema_state_dict`, which holds
# training-form keys the merged model does not have (KeyError in the host's tools/test.py).
custom_hooks = []
