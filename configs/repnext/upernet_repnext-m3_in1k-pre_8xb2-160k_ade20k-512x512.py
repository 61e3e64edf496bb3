# UperNet + RepNeXt-M3 (ImageNet-1k, distilled) on ADE20K, 512x512.
# Not an upstream setting (no published result): provided so RepNeXt can be
# compared with the UperNet numbers of other backbones. The recipe is the
# common UperNet one for modern backbones (Swin / ConvNeXt): global batch 16
# (8 GPUs x 2 images), 160k iterations, AdamW lr 6e-5, weight decay 0.01 with
# none on normalisation layers, 1500 warm-up iterations, poly (power 1).
_base_ = [
    '../_base_/models/upernet_repnext.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
custom_imports = dict(imports=['mmlk'], allow_failed_imports=False)
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch='m3',
        init_cfg=dict(type='Pretrained', checkpoint='repnext-m3_in1k')),
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150),
    auxiliary_head=dict(in_channels=256, num_classes=150))

train_dataloader = dict(batch_size=2)

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.0))
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
        end=1500),
    dict(
        type='PolyLR',
        power=1.0,
        eta_min=0.0,
        by_epoch=False,
        begin=1500,
        end=160000),
]
train_cfg = dict(max_iters=160000, val_interval=16000)
auto_scale_lr = dict(enable=False, base_batch_size=16)
# WARNING in the log when the run's global batch is not auto_scale_lr.base_batch_size
custom_hooks = [dict(type='mmlk.GlobalBatchCheckHook')]
