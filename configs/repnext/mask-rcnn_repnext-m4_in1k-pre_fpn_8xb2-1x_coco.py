# Mask R-CNN + RepNeXt-M4 on COCO, 1x. Upstream: mask_rcnn_repnext_m4_fpn_1x_coco
# (box AP 42.9, mask AP 39.1). Same recipe as the M3 config.
_base_ = ['./mask-rcnn_repnext-m3_in1k-pre_fpn_8xb2-1x_coco.py']
model = dict(
    backbone=dict(
        arch='m4',
        init_cfg=dict(type='Pretrained', checkpoint='repnext-m4_in1k')),
    neck=dict(in_channels=[64, 128, 256, 512]))
