# RepNeXt-M5 on ImageNet-1k at 224 px: 8 GPUs x 256 images = global batch 2048.
# Upstream: RepNeXt-M5, top-1 83.3 with distillation / 82.4 without (suous/RepNeXt README, 300 epochs);
# weights `repnext-m5_in1k` (deploy/ holds the merged model for `repnext-m5_in1k-fused`).
# Recipe (suous/RepNeXt main.py defaults, the DeiT/RepViT recipe): AdamW lr 1e-3 x 2048 / 512 = 4e-3,
# weight decay 0.025, 300 epochs with 5 warm-up epochs, EMA 0.99996, mixup 0.8 / cutmix 1.0, label
# smoothing 0.1, RandAugment, random erasing 0.25, repeated augmentation.
# Not reproduced: the published numbers use hard distillation from a RegNetY-160 teacher (DeiT); here
# both heads are trained on the labels (no teacher), upstream's "without distillation" setting.
_base_ = [
    '../_base_/models/repnext-m3_in1k.py',
    '../_base_/datasets/imagenet_bs256_repnext_224.py',
    '../_base_/schedules/imagenet_bs2048_adamw_300e_repnext.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmlk'], allow_failed_imports=False)
default_scope = 'mmpretrain'

model = dict(
    backbone=dict(arch='m5'),
    head=dict(in_channels=640),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))

# timm's ModelEma(decay=0.99996) -> mmengine momentum 1 - 0.99996.
custom_hooks = [
    dict(type='EMAHook', momentum=4e-5, priority='ABOVE_NORMAL'),
    # WARNING in the log when the run's global batch is not auto_scale_lr.base_batch_size
    dict(type='mmlk.GlobalBatchCheckHook'),
]

auto_scale_lr = dict(enable=False, base_batch_size=2048)
