# Cascade Mask R-CNN + RepLKNet-31B (ImageNet-22k pretrained) on COCO, 3x.
# Upstream: RepLKNet-31B_22Kpretrain_cascade_mask_rcnn_3x_coco (box AP 53.0,
# mask AP 46.0). Same recipe as the 1k config, drop-path 0.4.
_base_ = [
    './cascade-mask-rcnn_replknet-31b_in1k-pre_fpn_4conv1fc-giou_32xb1-ms-crop-3x_coco.py'  # noqa: E501
]
model = dict(
    backbone=dict(
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint='replknet-31b_in21k-224')))
