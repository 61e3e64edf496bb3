# UperNet + RepLKNet-31B (ImageNet-1k pretrained, 224) on ADE20K, 512x512.
# Upstream: RepLKNet-31B_1Kpretrain_upernet_160k_ade20k_512 (mIoU 49.9 single
# scale / 50.6 multi-scale).
#
# Upstream trained on 8 nodes x 8 GPUs x 2 images = a global batch of 128 for
# 40k iterations (the "160k" in the upstream name refers to mmseg's default
# 8x4 schedule; 128 x 40k = 5.1M samples). `--auto-scale-lr` rescales the
# learning rate linearly when you run with fewer GPUs; to see the same number
# of samples also raise `train_cfg.max_iters` by 128 / (your global batch).
_base_ = [
    '../_base_/models/upernet_replknet.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
]
custom_imports = dict(imports=['mmlk'], allow_failed_imports=False)
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch='31B',
        drop_path_rate=0.5,
        init_cfg=dict(type='Pretrained', checkpoint='replknet-31b_in1k-224')),
    decode_head=dict(in_channels=[128, 256, 512, 1024], num_classes=150),
    auxiliary_head=dict(in_channels=512, num_classes=150))

train_dataloader = dict(batch_size=2)

# AdamW, no weight decay on normalisation layers (upstream norm_decay_mult=0).
# `_delete_` drops the SGD settings of the base schedule entirely.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0))
# linear warm-up for 400 iterations from 1e-6 x lr, then poly (power 1) to 0
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
        end=400),
    dict(
        type='PolyLR',
        power=1.0,
        eta_min=0.0,
        by_epoch=False,
        begin=400,
        end=40000),
]
train_cfg = dict(max_iters=40000, val_interval=2000)
default_hooks = dict(
    checkpoint=dict(interval=2000), logger=dict(interval=10))
# the published global batch: 64 GPUs x 2 images
auto_scale_lr = dict(enable=False, base_batch_size=128)
# WARNING in the log when the run's global batch is not auto_scale_lr.base_batch_size
custom_hooks = [dict(type='mmlk.GlobalBatchCheckHook')]
