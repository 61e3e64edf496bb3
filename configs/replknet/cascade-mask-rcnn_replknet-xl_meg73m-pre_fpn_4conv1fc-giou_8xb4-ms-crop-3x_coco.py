# Cascade Mask R-CNN + RepLKNet-XL (MegData-73M pretrained) on COCO, 3x.
# Upstream: RepLKNet-XL_MegData73Mpretrain_cascade_mask_rcnn_3x_coco (box AP
# 55.5, mask AP 48.0).
#
# 4 images per GPU as upstream; 8 GPUs assumed (global batch 32, the same as
# the 31B/31L configs, so lr 4e-4 is unchanged). XL needs a BN on each
# returned stage (`norm_intermediate_features`) and its pre-training
# normalisation mean = std = 127.5. The normalisation lives in the model's
# data preprocessor, so validation and test use it too (the upstream config
# validated with the ImageNet mean/std).
_base_ = [
    './cascade-mask-rcnn_replknet-31b_in1k-pre_fpn_4conv1fc-giou_32xb1-ms-crop-3x_coco.py'  # noqa: E501
]
model = dict(
    data_preprocessor=dict(
        mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(
        arch='XL',
        drop_path_rate=0.5,
        norm_intermediate_features=True,
        init_cfg=dict(type='Pretrained', checkpoint='replknet-xl_meg73m')),
    neck=dict(in_channels=[256, 512, 1024, 2048]))
train_dataloader = dict(batch_size=4, num_workers=4)
auto_scale_lr = dict(enable=False, base_batch_size=32)
# WARNING in the log when the run's global batch is not auto_scale_lr.base_batch_size
custom_hooks = [dict(type='mmlk.GlobalBatchCheckHook')]
