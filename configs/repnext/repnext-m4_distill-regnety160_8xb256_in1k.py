# RepNeXt-M4 on ImageNet-1k, distilled from RegNetY-16GF as upstream trained its released weights
# (suous/RepNeXt README: top-1 82.3, weights `repnext-m4_in1k`). Data, schedule (8 GPUs x 256 = global
# batch 2048, AdamW 4e-3, 300 epochs), EMA and augmentation as repnext-m4_8xb256_in1k.py; only the
# classifier changes (see ../_base_/models/distill_regnety160.py).
_base_ = ['./repnext-m4_8xb256_in1k.py', '../_base_/models/distill_regnety160.py']
custom_imports = dict(imports=['mmlk', 'mmlk.models.classifiers.distill'], allow_failed_imports=False)

model = {{_base_.distill_classifier}}

# lr is already the global-batch value; scaling it would double-count.
auto_scale_lr = dict(enable=False, base_batch_size=2048)
