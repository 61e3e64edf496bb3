# Cascade Mask R-CNN + UniRepLKNet-S (ImageNet-1k pretrained) on COCO, 3x, 1280x800.
# Upstream: detection/configs/coco/casc_mask_rcnn_unireplknet_s_in1k_fpn_3x_coco.py, box AP 53.0 / mask AP 45.9,
# 113M parameters (UniRepLKNet README); released weights `cascade-mask-rcnn_unireplknet-s_in1k-pre_coco-3x`.
# Recipe (upstream config): FPN 256 channels / 5 levels with in_channels = the stage channels [96, 192, 384, 768], three
# cascade stages with 4conv1fc box heads (SyncBN) and GIoU loss weight 10, DETR-style multi-scale + crop
# augmentation (all inherited from the RepLKNet 3x config), 8 GPUs x 2 images = 16, AdamW lr 1e-4, weight
# decay 0.05, layer-wise lr decay 0.8 (upstream num_layers 12), 36 epochs, drop path 0.5.
# Upstream leaves `pretrained = None`; the ImageNet weights named below are this file's choice
# (the 1K 224 file).
# Evaluate the released weights (an mmdet 2.x file: convert it first, see checkpoints.yaml notes):
#   python tools/test.py configs/unireplknet/cascade-mask-rcnn_unireplknet-s_in1k-pre_fpn_4conv1fc-giou_8xb2-ms-crop-3x_coco.py CKPT
_base_ = ['../replknet/cascade-mask-rcnn_replknet-31b_in1k-pre_fpn_4conv1fc-giou_32xb1-ms-crop-3x_coco.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmlk.UniRepLKNet',
        arch='s',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.5,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        with_cp=True,
        init_cfg=dict(type='Pretrained', checkpoint='unireplknet-s_in1k-224')),
    neck=dict(in_channels=[96, 192, 384, 768], out_channels=256, num_outs=5))

train_dataloader = dict(batch_size=2)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='mmlk.LearningRateDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=0.8, decay_type='layer_wise'))
auto_scale_lr = dict(enable=False, base_batch_size=16)
custom_hooks = [
    # WARNING in the log when the run's global batch is not auto_scale_lr.base_batch_size
    dict(type='mmlk.GlobalBatchCheckHook'),
]
