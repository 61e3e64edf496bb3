# RepNeXt-M0 on CIFAR-100 at 224 px, 300 epochs: 4 GPUs x 512 images = global batch 2048.
# Upstream compact-model experiment (suous/RepNeXt README, logs/compact/cifar): top-1 74.53 / 80.14 / 81.73 / 81.97
# after 100 / 200 / 300 / 400 epochs (the sibling configs -{100,200,400}e_cifar100 change only the schedule).
# Recipe (dist_train_cifar.sh: main.py --data-set CIFAR --batch-size 512 on 4 GPUs --distillation-type none,
# otherwise main.py's defaults): AdamW lr 1e-3 x 2048 / 512 = 4e-3, weight decay 0.025, 5 warm-up epochs
# from 1e-6, cosine to 1e-5, EMA 0.99996, mixup 0.8 / cutmix 1.0, label smoothing 0.1, RandAugment,
# random erasing 0.25, repeated augmentation; both heads trained on the labels (no teacher).
# Not reproduced: timm's adaptive gradient clipping (AGC 0.02), which mmengine does not offer.
_base_ = [
    '../_base_/models/repnext-m3_in1k.py',
    '../_base_/datasets/cifar100_bs512_repnext_224.py',
    '../_base_/schedules/imagenet_bs2048_adamw_300e_repnext.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmlk'], allow_failed_imports=False)
default_scope = 'mmpretrain'

model = dict(
    backbone=dict(arch='m0'),
    head=dict(num_classes=100, in_channels=320),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))

# timm's ModelEma(decay=0.99996) -> mmengine momentum 1 - 0.99996.
custom_hooks = [dict(type='EMAHook', momentum=4e-5, priority='ABOVE_NORMAL')]

# lr is already the global-batch value; scaling it would double-count.
auto_scale_lr = dict(enable=False, base_batch_size=2048)
