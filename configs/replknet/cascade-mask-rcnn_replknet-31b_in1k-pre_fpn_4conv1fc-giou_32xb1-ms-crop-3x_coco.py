# Cascade Mask R-CNN + RepLKNet-31B (ImageNet-1k pretrained) on COCO, 3x.
# Upstream: RepLKNet-31B_1Kpretrain_cascade_mask_rcnn_3x_coco (box AP 52.2,
# mask AP 45.2).
#
# Recipe (upstream): FPN 256 channels / 5 levels, three cascade stages with
# ConvFC box heads (4 shared convs + 1 fc, SyncBN) and GIoU loss weight 10,
# DETR-style multi-scale + crop augmentation, AdamW lr 4e-4, weight decay
# 0.05 with none on normalisation layers, 36 epochs with steps at 27 and 33.
#
# Global batch: upstream set 1 image per GPU but did not state the GPU count
# of its detection runs. 32 is assumed here (32 GPUs x 1; it matches the
# XL config's 4 images per GPU on one 8-GPU node and is the ConvNeXt
# batch-16 / lr-2e-4 recipe scaled linearly to lr 4e-4). `--auto-scale-lr`
# rescales the learning rate linearly for any other global batch.
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmlk'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)


def _giou_head(target_stds):
    # one cascade stage: 4 shared convs + 1 fc, regression in absolute
    # coordinates (reg_decoded_bbox) so that the GIoU loss applies
    return dict(
        type='ConvFCBBoxHead',
        num_shared_convs=4,
        num_shared_fcs=1,
        in_channels=256,
        conv_out_channels=256,
        fc_out_channels=1024,
        roi_feat_size=7,
        num_classes=80,
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[0., 0., 0., 0.],
            target_stds=target_stds),
        reg_class_agnostic=False,
        reg_decoded_bbox=True,
        norm_cfg=norm_cfg,
        loss_cls=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=10.0))


model = dict(
    backbone=dict(
        _delete_=True,
        type='mmlk.RepLKNet',
        arch='31B',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.6,
        norm_cfg=norm_cfg,
        with_cp=True,
        init_cfg=dict(type='Pretrained', checkpoint='replknet-31b_in1k-224')),
    neck=dict(in_channels=[128, 256, 512, 1024], out_channels=256, num_outs=5),
    roi_head=dict(bbox_head=[
        _giou_head([0.1, 0.1, 0.2, 0.2]),
        _giou_head([0.05, 0.05, 0.1, 0.1]),
        _giou_head([0.033, 0.033, 0.067, 0.067]),
    ]))
# mmengine's config parser keeps module-level callables; drop the helper so
# the dumped config stays plain data.
del _giou_head

# DETR / Sparse R-CNN style augmentation: either a multi-scale resize, or a
# resize -> absolute random crop -> multi-scale resize, chosen at random.
_ms_scales = [(480, 1333), (512, 1333), (544, 1333), (576, 1333),
              (608, 1333), (640, 1333), (672, 1333), (704, 1333),
              (736, 1333), (768, 1333), (800, 1333)]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=_ms_scales,
                  keep_ratio=True)],
            [
                dict(
                    type='RandomChoiceResize',
                    scales=[(400, 1333), (500, 1333), (600, 1333)],
                    keep_ratio=True),
                dict(
                    type='RandomCrop',
                    crop_type='absolute_range',
                    crop_size=(384, 600),
                    allow_negative_crop=True),
                dict(
                    type='RandomChoiceResize', scales=_ms_scales,
                    keep_ratio=True),
            ],
        ]),
    dict(type='PackDetInputs'),
]
del _ms_scales
train_dataloader = dict(
    batch_size=1, num_workers=2, dataset=dict(pipeline=train_pipeline))

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[27, 33],
        gamma=0.1),
]
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=4e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0))
auto_scale_lr = dict(enable=False, base_batch_size=32)
# WARNING in the log when the run's global batch is not auto_scale_lr.base_batch_size
custom_hooks = [dict(type='mmlk.GlobalBatchCheckHook')]
