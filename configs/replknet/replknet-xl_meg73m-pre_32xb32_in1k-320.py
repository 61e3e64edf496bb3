# RepLKNet-XL pre-trained on MegData-73M, fine-tuned on ImageNet-1k at 320 px: 32 GPUs x 32 = 1024.
# Upstream: RepLKNet-XL MegData73M->1K, 320x320, top-1 87.8 (RepLKNet-pytorch README); weights
# `replknet-xl_meg73m-pre_in1k-320`; starts from `replknet-xl_meg73m`.
# Inputs are normalised with mean = std = 127.5 (README tip 1) in training and evaluation alike.
# Upstream published no XL fine-tuning command: this config uses its 31L 22K->1K 384 px recipe (lr 4e-4
# at 512 images -> 8e-4 at 1024, min_lr ratio 0.75, weight decay 1e-8, 30 epochs, 1 warm-up epoch, drop
# path 0.3, EMA, no mixup/cutmix, layer-wise lr decay 0.7) - an assumption, not a published setting.
_base_ = [
    '../_base_/models/replknet-xl_in1k.py',
    '../_base_/datasets/imagenet_bs32_replknet-xl_320.py',
    '../_base_/schedules/imagenet_adamw_30e_finetune_replknet.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmlk'], allow_failed_imports=False)
default_scope = 'mmpretrain'

model = dict(
    backbone=dict(
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='replknet-xl_meg73m')))

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
