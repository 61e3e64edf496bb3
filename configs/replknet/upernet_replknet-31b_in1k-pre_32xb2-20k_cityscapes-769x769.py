# UperNet + RepLKNet-31B (ImageNet-1k pretrained) on Cityscapes, 769x769.
# Upstream: RepLKNet-31B_1Kpretrain_upernet_80k_cityscapes_769 (mIoU 83.1
# single scale / 83.5 multi-scale).
#
# Upstream: 4 nodes x 8 GPUs x 2 images = global batch 64 for 20k iterations
# ("80k" in the upstream name is mmseg's 8-GPU default). 769 crops use
# align_corners=True (odd sizes), and, as upstream, whole-image testing.
_base_ = [
    '../_base_/models/upernet_replknet.py',
    'mmseg::_base_/datasets/cityscapes_769x769.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_20k.py',
]
custom_imports = dict(imports=['mmlk'], allow_failed_imports=False)
crop_size = (769, 769)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch='31B',
        drop_path_rate=0.5,
        init_cfg=dict(type='Pretrained', checkpoint='replknet-31b_in1k-224')),
    decode_head=dict(
        in_channels=[128, 256, 512, 1024], num_classes=19,
        align_corners=True),
    auxiliary_head=dict(in_channels=512, num_classes=19, align_corners=True),
    test_cfg=dict(mode='whole'))

train_dataloader = dict(batch_size=2)

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
        end=20000),
]
train_cfg = dict(max_iters=20000, val_interval=2000)
default_hooks = dict(
    checkpoint=dict(interval=2000), logger=dict(interval=10))
auto_scale_lr = dict(enable=False, base_batch_size=64)
# WARNING in the log when the run's global batch is not auto_scale_lr.base_batch_size
custom_hooks = [dict(type='mmlk.GlobalBatchCheckHook')]
