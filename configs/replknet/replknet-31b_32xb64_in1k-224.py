# RepLKNet-31B trained from scratch on ImageNet-1k at 224 px: 32 GPUs x 64 images = global batch 2048.
# Upstream: RepLKNet-31B, 224x224, top-1 83.5 (RepLKNet-pytorch README); weights `replknet-31b_in1k-224`.
# Recipe (README "Pretrain RepLKNet-31B on ImageNet-1K"): AdamW lr 4e-3, weight decay 0.05, 300 epochs with
# 10 warm-up epochs, drop path 0.5, EMA 0.9999 used for evaluation, mixup 0.8 / cutmix 1.0, label
# smoothing 0.1, RandAugment, random erasing 0.25.
# Evaluate the released weights:
#   python tools/test.py configs/replknet/replknet-31b_32xb64_in1k-224.py CKPT --eval accuracy
_base_ = [
    '../_base_/models/replknet-31b_in1k.py',
    '../_base_/datasets/imagenet_bs64_replknet_224.py',
    '../_base_/schedules/imagenet_bs2048_adamw_300e_replknet.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmlk'], allow_failed_imports=False)
default_scope = 'mmpretrain'

model = dict(
    backbone=dict(drop_path_rate=0.5),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))

# timm's ModelEma(decay=0.9999) -> mmengine momentum 1 - 0.9999; validation uses the averaged weights.
custom_hooks = [
    dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL'),
    # WARNING in the log when the run's global batch is not auto_scale_lr.base_batch_size
    dict(type='mmlk.GlobalBatchCheckHook'),
]

auto_scale_lr = dict(enable=False, base_batch_size=2048)
