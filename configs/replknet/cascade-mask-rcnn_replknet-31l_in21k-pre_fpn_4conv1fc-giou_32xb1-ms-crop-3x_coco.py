# Cascade Mask R-CNN + RepLKNet-31L (ImageNet-22k pretrained) on COCO, 3x.
# Upstream: RepLKNet-31L_22Kpretrain_cascade_mask_rcnn_3x_coco (box AP 53.9,
# mask AP 46.5). Same recipe as the 31B configs, drop-path 0.7.
_base_ = [
    './cascade-mask-rcnn_replknet-31b_in1k-pre_fpn_4conv1fc-giou_32xb1-ms-crop-3x_coco.py'  # noqa: E501
]
model = dict(
    backbone=dict(
        arch='31L',
        drop_path_rate=0.7,
        init_cfg=dict(type='Pretrained', checkpoint='replknet-31l_in21k-224')),
    neck=dict(in_channels=[192, 384, 768, 1536]))
