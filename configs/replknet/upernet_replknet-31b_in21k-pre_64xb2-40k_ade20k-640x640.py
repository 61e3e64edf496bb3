# UperNet + RepLKNet-31B (ImageNet-22k pretrained) on ADE20K, 640x640 crops.
# Upstream: RepLKNet-31B_22Kpretrain_upernet_160k_ade20k_640 (mIoU 51.5 single
# scale / 52.3 multi-scale).
#
# Global batch 128 (8 nodes x 8 GPUs x 2 images) for 40k iterations, as
# upstream; `--auto-scale-lr` rescales the learning rate for other batch sizes.
# Upstream kept the 512-based resize scale (2048, 512) and only enlarged the
# crop to 640; testing slides 640x640 windows with stride 426.
_base_ = [
    '../_base_/models/upernet_replknet.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
]
custom_imports = dict(imports=['mmlk'], allow_failed_imports=False)
crop_size = (640, 640)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch='31B',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='replknet-31b_in21k-224')),
    decode_head=dict(in_channels=[128, 256, 512, 1024], num_classes=150),
    auxiliary_head=dict(in_channels=512, num_classes=150),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(426, 426)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(
        type='RandomResize',
        scale=(2048, 512),
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0))
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
auto_scale_lr = dict(enable=False, base_batch_size=128)
# WARNING in the log when the run's global batch is not auto_scale_lr.base_batch_size
custom_hooks = [dict(type='mmlk.GlobalBatchCheckHook')]
