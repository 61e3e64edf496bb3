# Cascade Mask R-CNN + UniRepLKNet-XL (ImageNet-22K pretrained) on COCO, 3x, 1280x800.
# Upstream: detection/configs/coco/casc_mask_rcnn_unireplknet_xl_in22k_fpn_3x_coco.py, box AP 56.4 / mask AP 49.0,
# 443M parameters (UniRepLKNet README); released weights `cascade-mask-rcnn_unireplknet-xl_in21k-pre_coco-3x`.
# Recipe (upstream config): FPN 256 channels / 5 levels with in_channels = the stage channels [256, 512, 1024, 2048], three
# cascade stages with 4conv1fc box heads (SyncBN) and GIoU loss weight 10, DETR-style multi-scale + crop
# augmentation (all inherited from the RepLKNet 3x config), 8 GPUs x 2 images = 16, AdamW lr 1e-4, weight
# decay 0.05, layer-wise lr decay 0.7 (upstream num_layers 12), 36 epochs, drop path 0.7, EMA (momentum 1e-4).
# Upstream leaves `pretrained = None`; the ImageNet weights named below are this file's choice
# (the 22K->1K fine-tuned file, as upstream segmentation configs use).
# Evaluate the released weights (an mmdet 2.x file: convert it first, see checkpoints.yaml notes):
#   python tools/test.py configs/unireplknet/cascade-mask-rcnn_unireplknet-xl_in21k-pre_fpn_4conv1fc-giou_8xb2-ms-crop-3x_coco.py CKPT
_base_ = ['../replknet/cascade-mask-rcnn_replknet-31b_in1k-pre_fpn_4conv1fc-giou_32xb1-ms-crop-3x_coco.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmlk.UniRepLKNet',
        arch='xl',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.7,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        with_cp=True,
        init_cfg=dict(type='Pretrained', checkpoint='unireplknet-xl_in21k-pre_in1k-384')),
    neck=dict(in_channels=[256, 512, 1024, 2048], out_channels=256, num_outs=5))

train_dataloader = dict(batch_size=2)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='mmlk.LearningRateDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=0.7, decay_type='layer_wise'))
auto_scale_lr = dict(enable=False, base_batch_size=16)
custom_hooks = [
    # upstream ExpMomentumEMAHook(momentum=1e-4)
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=1e-4, update_buffers=True, priority=49),
    # WARNING in the log when the run's global batch is not auto_scale_lr.base_batch_size
    dict(type='mmlk.GlobalBatchCheckHook'),
]
