# UperNet + UniRepLKNet-B (ImageNet-22K pretrained) on ADE20K, 640x640, 160k iterations.
# Upstream: segmentation/configs/ade20k/upernet_unireplknet_b_in22k_640_160k_ade20k.py, mIoU 53.5 single
# scale / 53.9 multi-scale, 130M parameters (UniRepLKNet README); released weights `upernet_unireplknet-b_in21k-pre_ade20k-640x640`.
# Recipe (upstream config): 8 GPUs x 2 images = 16, 160k iterations, AdamW lr 1e-4, weight decay 0.05,
# layer-wise lr decay 0.9 (upstream num_layers 12; mmlk's constructor numbers layers itself), linear warm-up
# 1500 iterations from 1e-6 x lr, then poly (power 1) to 0; drop path 0.3; UperNet channels 512 with
# in_channels = the stage channels [128, 256, 512, 1024], auxiliary FCN head on stage 2 (512 channels); whole-image testing.
# Backbone initialised from `unireplknet-b_in21k-pre_in1k-384` as upstream.
# Evaluate the released weights (an mmseg 0.x file: convert it first, see checkpoints.yaml notes):
#   python tools/test.py configs/unireplknet/upernet_unireplknet-b_in21k-pre_8xb2-160k_ade20k-640x640.py CKPT
_base_ = [
    '../_base_/models/upernet_replknet.py',
    'mmseg::_base_/datasets/ade20k_640x640.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
custom_imports = dict(imports=['mmlk'], allow_failed_imports=False)
crop_size = (640, 640)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='mmlk.UniRepLKNet',
        arch='b',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,
        norm_cfg=norm_cfg,
        with_cp=True,
        init_cfg=dict(type='Pretrained', checkpoint='unireplknet-b_in21k-pre_in1k-384')),
    decode_head=dict(in_channels=[128, 256, 512, 1024], channels=512, num_classes=150),
    auxiliary_head=dict(in_channels=512, in_index=2, num_classes=150),
    test_cfg=dict(mode='whole'))

# 640 crops: images resized around (2560, 640) as upstream's 640 configs
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(2560, 640), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2560, 640), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# (one assignment: a second `train_dataloader = ...` in this file would drop the pipeline override)
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='mmlk.LearningRateDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=0.9, decay_type='layer_wise'))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=160000),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=160000, val_interval=4000)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=4000, max_keep_ckpts=20, save_best='mIoU'))
auto_scale_lr = dict(enable=False, base_batch_size=16)
# WARNING in the log when the run's global batch is not auto_scale_lr.base_batch_size
custom_hooks = [dict(type='mmlk.GlobalBatchCheckHook')]
