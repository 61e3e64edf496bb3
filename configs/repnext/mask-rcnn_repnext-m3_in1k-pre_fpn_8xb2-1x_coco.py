# Mask R-CNN + RepNeXt-M3 (ImageNet-1k, distilled 300 epochs) on COCO, 1x.
# Upstream: mask_rcnn_repnext_m3_fpn_1x_coco (box AP 40.8, mask AP 37.8).
#
# Recipe (upstream): mmdet's Mask R-CNN FPN model and 1x schedule (12 epochs,
# steps at 8 and 11, 500 linear warm-up iterations), AdamW lr 2e-4, weight
# decay 0.05, no gradient clipping; 8 GPUs x 2 images = global batch 16.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmlk'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmlk.RepNeXt',
        arch='m3',
        out_indices=(0, 1, 2, 3),
        # Upstream's detection backbone keeps every BatchNorm in eval mode while fine-tuning.
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='repnext-m3_in1k')),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=256, num_outs=5))

train_dataloader = dict(batch_size=2)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=0.05))
auto_scale_lr = dict(enable=False, base_batch_size=16)
# WARNING in the log when the run's global batch is not auto_scale_lr.base_batch_size
custom_hooks = [dict(type='mmlk.GlobalBatchCheckHook')]
