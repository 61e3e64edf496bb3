# RepLKNet-31L pre-trained on ImageNet-22K, fine-tuned on ImageNet-1k at 384 px: 32 GPUs x 32 = 1024.
# Upstream: RepLKNet-31L 22K->1K, 384x384, top-1 86.6 (RepLKNet-pytorch README); weights
# `replknet-31l_in21k-pre_in1k-384`; starts from `replknet-31l_in21k-224` (21841-class head dropped).
# Recipe (README "Finetune 22K-pretrained RepLKNet-31L on ImageNet-1K (384x384)"): 4 nodes x 8 GPUs x 16
# = 512 images, lr 4e-4 decaying only to min_lr 3e-4, weight decay 1e-8, 30 epochs with 1 warm-up epoch,
# drop path 0.3, EMA, no mixup/cutmix, layer-wise lr decay 0.7. lr rescaled to this file's 1024: 8e-4.
_base_ = [
    '../_base_/models/replknet-31l_in1k.py',
    '../_base_/datasets/imagenet_bs64_replknet_384.py',
    '../_base_/schedules/imagenet_adamw_30e_finetune_replknet.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmlk'], allow_failed_imports=False)
default_scope = 'mmpretrain'

model = dict(
    backbone=dict(
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='replknet-31l_in21k-224')))

train_dataloader = dict(batch_size=32)
val_dataloader = dict(batch_size=32)
test_dataloader = dict(batch_size=32)

optim_wrapper = dict(optimizer=dict(lr=4e-4 * 1024 / 512))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min_ratio=3e-4 / 4e-4, by_epoch=True, begin=1, end=30,
         convert_to_iter_based=True),
]

custom_hooks = [
    dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL'),
    # WARNING in the log when the run's global batch is not auto_scale_lr.base_batch_size
    dict(type='mmlk.GlobalBatchCheckHook'),
]

auto_scale_lr = dict(enable=False, base_batch_size=1024)
